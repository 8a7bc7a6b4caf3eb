import CLinux
import Foundation
import Glibc
import Testing
import TestSupport
@testable import LinuxIO

/// TAP devices and namespaces against the real kernel. Every name is unique ("tio…") and
/// removed at the end, also when an expectation fails.
@Suite struct TAPDeviceTests {
    @Test(.enabled(if: Capabilities.canCreateTAP, "needs root and /dev/net/tun"))
    func tapLinkAppearsAndDisappearsWithTheFD() throws {
        let name = uniqueName("t")
        let tap = try TAPDevice(name: name)
        defer { tap.close() }
        #expect(tap.name == name)
        #expect(tap.fd >= 0)
        #expect(sh("ip link show \(name)").succeeded)
        try Sysctl.write("net/ipv6/conf/\(name)/disable_ipv6", "1")
        #expect(sh("cat /proc/sys/net/ipv6/conf/\(name)/disable_ipv6").stdout == "1\n")
        tap.close()
        tap.close()
        #expect(tap.fd == -1)
        #expect(!sh("ip link show \(name)").succeeded)
        #expect(throws: SystemError.self) { try Sysctl.write("net/ipv6/conf/\(name)/disable_ipv6", "1") }
        // Use after close is a value, not a crash.
        var byte: UInt8 = 0
        #expect(withUnsafeMutableBytes(of: &byte) { tap.read(into: $0) } == .failed(EBADF))
    }

    @Test(.enabled(if: Capabilities.canCreateTAP, "needs root and /dev/net/tun"))
    func vnetHeaderTAPOpensAndReadsWouldBlockWhenIdle() throws {
        let tap = try TAPDevice(name: uniqueName("v"), vnetHeader: true)
        defer { tap.close() }
        #expect(tap.vnetHeader)
        let size = try tap.currentVNetHeaderSize()
        #expect(tap.vnetHeaderSize == 12 && size == 12, "the switch's 12-byte virtio_net_hdr_v1")
        var buf = [UInt8](repeating: 0, count: 2048)
        #expect(buf.withUnsafeMutableBytes { tap.read(into: $0) } == .wouldBlock)
    }

    @Test(.enabled(if: Capabilities.canCreateTAP, "needs root and /dev/net/tun"))
    func duplicateTAPNameInUseByAnotherFDFails() throws {
        let name = uniqueName("d")
        let tap = try TAPDevice(name: name)
        defer { tap.close() }
        #expect(throws: SystemError.self) { _ = try TAPDevice(name: name) }
    }

    /// The kernel stack in a namespace ARPs through the TAP; we read that frame from the fd,
    /// then answer with an ARP reply written into the fd and watch the kernel receive it.
    @Test(.enabled(if: Capabilities.canCreateTAP && Capabilities.canCreateNamespaces, "needs root, /dev/net/tun and ip"))
    func framesFlowBetweenTheFDAndAKernelStackInANamespace() throws {
        let ns = uniqueName("n"), name = uniqueName("t")
        try NetworkNamespace.create(ns)
        defer { try? NetworkNamespace.delete(ns) }
        let tap = try TAPDevice(name: name)
        defer { tap.close() }

        let setup = sh("""
            ip link set \(name) netns \(ns) && \
            ip netns exec \(ns) sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.\(name).disable_ipv6=1 && \
            ip -n \(ns) addr add 10.98.0.1/24 dev \(name) && ip -n \(ns) link set \(name) up
            """)
        try #require(setup.succeeded, "setup: \(setup.stderr)")
        let info = try #require(ipJSON("ip -n \(ns) -j link show \(name)").first)
        let tapMAC = try #require(MACAddressText(info["address"] as? String))

        let ep = try Epoll()
        try ep.add(tap.fd, events: Epoll.readable, data: 42)
        var buf = [UInt8](repeating: 0, count: 2048)
        while case .bytes = buf.withUnsafeMutableBytes({ tap.read(into: $0) }) {} // drop earlier frames

        // No one answers 10.98.0.2, so the kernel ARPs for it through the TAP.
        _ = sh("ip netns exec \(ns) ping -c1 -W1 10.98.0.2")
        var events = [EpollEvent](repeating: EpollEvent(), count: 4)
        let n = try events.withUnsafeMutableBufferPointer { try ep.wait(into: $0, timeoutMilliseconds: 3000) }
        #expect(n == 1 && events[0].data == 42 && events[0].events & Epoll.readable != 0)

        var sawARP = false
        while case .bytes(let len) = buf.withUnsafeMutableBytes({ tap.read(into: $0) }) {
            guard len >= 42, buf[12] == 0x08, buf[13] == 0x06 else { continue }
            #expect(Array(buf[6..<12]) == tapMAC, "source MAC is the TAP's")
            #expect(Array(buf[0..<6]) == [UInt8](repeating: 0xFF, count: 6), "request is broadcast")
            #expect(buf[20] == 0 && buf[21] == 1, "ARP request")
            #expect(Array(buf[22..<28]) == tapMAC, "sender hardware address")
            #expect(Array(buf[38..<42]) == [10, 98, 0, 2], "target protocol address")
            sawARP = true
        }
        #expect(sawARP, "kernel emitted an ARP request through the TAP")

        // Answer it: the kernel must count the frame and learn the neighbour.
        let peer: [UInt8] = [0x02, 0x00, 0x00, 0x98, 0x00, 0x02]
        var reply = tapMAC + peer + [0x08, 0x06]
        reply += [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02] + peer + [10, 98, 0, 2] + tapMAC + [10, 98, 0, 1]
        let before = try #require(rxPackets(name, in: ns))
        #expect(reply.withUnsafeBytes { tap.write($0) } == .bytes(42))

        // writev: a broadcast frame gathered from header and payload pieces.
        var header = [UInt8](repeating: 0xFF, count: 6) + peer + [0x88, 0xB5] // local experimental ethertype
        var payload = [UInt8](repeating: 0xAB, count: 46)
        let gathered = header.withUnsafeMutableBytes { h in
            payload.withUnsafeMutableBytes { p in
                var iov = [iovec(iov_base: h.baseAddress, iov_len: h.count), iovec(iov_base: p.baseAddress, iov_len: p.count)]
                return tap.writev(&iov, count: 2)
            }
        }
        #expect(gathered == .bytes(60))

        var after = before
        for _ in 0..<20 where after < before + 2 {
            usleep(50_000)
            after = rxPackets(name, in: ns) ?? after
        }
        #expect(after >= before + 2, "namespace rx counter rose from \(before) to \(after)")
        let neigh = sh("ip -n \(ns) neigh show 10.98.0.2 dev \(name)").stdout
        #expect(neigh.contains("02:00:00:98:00:02"), "kernel learned the neighbour: \(neigh)")
    }
}

/// The six octets of a textual MAC ("aa:bb:…"), for comparing with frame bytes.
func MACAddressText(_ text: String?) -> [UInt8]? {
    guard let parts = text?.split(separator: ":"), parts.count == 6 else { return nil }
    let octets = parts.compactMap { UInt8($0, radix: 16) }
    return octets.count == 6 ? octets : nil
}

@Suite struct NetworkNamespaceTests {
    @Test(.enabled(if: Capabilities.canCreateNamespaces, "needs root and ip"))
    func createExistsListOpenDeleteRoundTrip() throws {
        let ns = uniqueName("n")
        #expect(!NetworkNamespace.exists(ns))
        try NetworkNamespace.create(ns)
        defer { try? NetworkNamespace.delete(ns) }
        #expect(NetworkNamespace.exists(ns))
        #expect(NetworkNamespace.list().contains(ns))

        // iproute2 sees it and runs commands in it: a fresh namespace has only lo.
        #expect(sh("ip netns list").stdout.contains(ns))
        let links = ipJSON("ip -n \(ns) -j link show").compactMap { $0["ifname"] as? String }
        #expect(links == ["lo"])

        // It is a different namespace from ours.
        let fd = try NetworkNamespace.open(ns)
        var theirs = stat(), ours = stat()
        fstat(fd, &theirs)
        stat("/proc/self/ns/net", &ours)
        close(fd)
        #expect(theirs.st_ino != ours.st_ino)

        do {
            try NetworkNamespace.create(ns)
            Issue.record("duplicate create should fail")
        } catch let e as SystemError {
            #expect(e.errno == EEXIST)
            #expect(e.description.contains("netns \(ns)"))
        }

        try NetworkNamespace.delete(ns)
        #expect(!NetworkNamespace.exists(ns))
        #expect(!sh("ip netns list").stdout.contains(ns))
        #expect(throws: SystemError(operation: "delete network namespace", subject: "netns \(ns)", errno: ENOENT)) {
            try NetworkNamespace.delete(ns)
        }
        #expect(throws: SystemError.self) { _ = try NetworkNamespace.open(ns) }
    }

    @Test(.enabled(if: Capabilities.canCreateNamespaces, "needs root and ip"))
    func iprouteDeletesNamespacesWeCreateAndWeDeleteItsOwn() throws {
        let ours = uniqueName("a"), theirs = uniqueName("b")
        try NetworkNamespace.create(ours)
        defer { try? NetworkNamespace.delete(ours) }
        #expect(sh("ip netns del \(ours)").succeeded)
        #expect(!NetworkNamespace.exists(ours))

        try #require(sh("ip netns add \(theirs)").succeeded)
        defer { _ = sh("ip netns del \(theirs) 2>/dev/null") }
        #expect(NetworkNamespace.exists(theirs))
        try NetworkNamespace.delete(theirs)
        #expect(!sh("ip netns list").stdout.contains(theirs))
    }
}
