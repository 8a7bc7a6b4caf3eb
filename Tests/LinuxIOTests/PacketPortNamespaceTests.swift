import Foundation
import Glibc
import Testing
import TestSupport
@testable import LinuxIO

/// `PacketPort.deviceExists` asks the socket's own namespace: a port opened inside another
/// network namespace (a VM TAP of a host with `netns:`) is seen to exist from the
/// daemon's threads, and seen gone once its link is deleted.
@Suite struct PacketPortNamespaceTests {
    @Test(.enabled(if: Capabilities.isRoot, "needs root (namespaces, veth, AF_PACKET)"))
    func deviceExistsIsAskedInTheSocketsNamespace() throws {
        let p = Capabilities.uniquePrefix("tpn")
        let ns = p + "n", a = p + "a", b = p + "b"
        defer { sh("ip netns del \(ns) 2>/dev/null") }
        let setup = sh("ip netns add \(ns) && ip -n \(ns) link add \(a) type veth peer name \(b) && ip -n \(ns) link set \(a) up && ip -n \(ns) link set \(b) up")
        try #require(setup.succeeded, "setup: \(setup.stderr)")
        let port = try NetworkNamespace.run(in: ns) { try PacketPort(interface: a, mtu: 1500) }
        defer { port.close() }
        #expect(!sh("ip link show \(a)").succeeded, "\(a) is not in the test's own namespace")
        #expect(port.deviceExists, "seen from this thread, in another namespace")
        try #require(sh("ip -n \(ns) link del \(a)").succeeded)
        var gone = false
        for _ in 0..<20 where !gone { gone = !port.deviceExists; if !gone { usleep(50_000) } }
        #expect(gone, "the deleted link is seen gone")
    }
}
