import Foundation
import Glibc
import LinuxIO
import Model
import Testing
import TestSupport
@testable import Netlink

/// A unique, short name for a namespace or link this test creates: "tnl" + random base36.
func uniqueName(_ role: String) -> String {
    Capabilities.uniquePrefix("tnl") + String(Int.random(in: 0..<1296), radix: 36) + role
}


@Suite struct NetlinkErrorTests {
    @Test func describesWithLibnlTextNotErrno() {
        let e = NetlinkError(operation: "rtnl_link_change", subject: "link x", code: -12)
        #expect(e.code == 12)
        #expect(e.isNotFound)
        #expect(e.description == "rtnl_link_change (link x): Object not found (NLE 12)")
        let sys = NetlinkError(operation: "setns", subject: "netns y", code: -28, systemErrno: EPERM)
        #expect(sys.description.contains("Operation not permitted (errno 1)"))
    }

    /// Reading links needs no privileges.
    @Test func listsLinksOfTheCallersNamespace() throws {
        let sock = try NetlinkSocket()
        #expect(try sock.linkNames().first == "lo")
        #expect(try sock.linkIndex(named: "lo") == 1)
        #expect(try sock.linkIndex(named: "tnl-absent") == nil)
        #expect(try !sock.linkExists(named: "tnl-absent"))
        #expect(try sock.linkState(named: "tnl-absent") == nil)
    }

    @Test func closedSocketThrows() throws {
        let sock = try NetlinkSocket()
        sock.close(); sock.close()
        #expect(throws: NetlinkError.self) { _ = try sock.linkNames() }
    }

    @Test func socketInMissingNamespaceSaysWhy() {
        do {
            _ = try NetlinkSocket(namespace: "tnl-no-such-ns")
            Issue.record("expected an error")
        } catch let e as NetlinkError {
            #expect(e.systemErrno == ENOENT)
            #expect(e.description.contains("netns tnl-no-such-ns"))
        } catch { Issue.record("unexpected \(error)") }
    }
}

@Suite struct NetlinkLinkTests {
    /// A guest's view: a TAP moved into its namespace, renamed eth0 and configured from the
    /// host side through a socket bound inside that namespace; checked with iproute2.
    @Test(.enabled(if: Capabilities.canCreateTAP && Capabilities.canCreateNamespaces, "needs root, /dev/net/tun and ip"))
    func moveRenameConfigureAndAddressATAPInANamespace() throws {
        let ns = uniqueName("n"), name = uniqueName("t")
        try NetworkNamespace.create(ns)
        defer { try? NetworkNamespace.delete(ns) }
        let tap = try TAPDevice(name: name)
        defer { tap.close() }

        let host = try NetlinkSocket()
        #expect(try host.linkExists(named: name))
        #expect(try host.linkNames().contains(name))
        let nsfd = try NetworkNamespace.open(ns)
        defer { close(nsfd) }
        try host.moveLink(named: name, toNamespaceFD: nsfd)
        #expect(try !host.linkExists(named: name))

        let guest = try NetlinkSocket(namespace: ns)
        #expect(guest.namespace == ns)
        let index = try #require(try guest.linkIndex(named: name))
        let mac = try #require(MACAddress("02:77:00:00:00:01"))
        try guest.configureLink(index: index, name: "eth0", mac: mac, mtu: 1400, up: true)
        try guest.setLinkUp(named: "lo")
        try guest.addIPv4Address(index: index, address: 0x0A4D_0001, prefixLength: 24)

        let link = try #require(ipJSON("ip -n \(ns) -j link show eth0").first)
        #expect(link["ifname"] as? String == "eth0")
        #expect(link["address"] as? String == "02:77:00:00:00:01")
        #expect((link["mtu"] as? NSNumber)?.intValue == 1400)
        #expect((link["flags"] as? [String])?.contains("UP") == true)
        let lo = try #require(ipJSON("ip -n \(ns) -j link show lo").first)
        #expect((lo["flags"] as? [String])?.contains("UP") == true)

        let addrs = ipJSON("ip -n \(ns) -j addr show eth0").first?["addr_info"] as? [[String: Any]] ?? []
        let v4 = addrs.filter { $0["family"] as? String == "inet" }
        #expect(v4.count == 1)
        #expect(v4.first?["local"] as? String == "10.77.0.1")
        #expect((v4.first?["prefixlen"] as? NSNumber)?.intValue == 24)

        // Our own view agrees.
        #expect(try guest.linkNames() == ["lo", "eth0"])
        let state = try #require(try guest.linkState(named: "eth0"))
        #expect(state.up && state.carrier, "TAP has carrier while its fd is open")
        let attrs = try #require(try guest.linkAttributes(named: "eth0"))
        #expect(attrs.index == index && attrs.mac == mac && attrs.mtu == 1400)

        // The address is there already: libnl's NLE_EXIST, not an errno.
        do {
            try guest.addIPv4Address(index: index, address: 0x0A4D_0001, prefixLength: 24)
            Issue.record("duplicate address should fail")
        } catch let e as NetlinkError {
            #expect(e.isExists, "\(e)")
            #expect(e.description.contains("10.77.0.1/24"))
        }

        // The same request with up: false takes it down.
        try guest.configureLink(index: index, up: false)
        #expect(try guest.linkState(named: "eth0")?.up == false)
    }

    @Test(.enabled(if: Capabilities.canCreateTAP && Capabilities.canCreateNamespaces, "needs root, /dev/net/tun and ip"))
    func movingAMissingLinkThrowsAUsefulError() throws {
        let ns = uniqueName("n"), missing = uniqueName("m")
        try NetworkNamespace.create(ns)
        defer { try? NetworkNamespace.delete(ns) }
        let nsfd = try NetworkNamespace.open(ns)
        defer { close(nsfd) }
        do {
            try NetlinkSocket().moveLink(named: missing, toNamespaceFD: nsfd)
            Issue.record("expected an error")
        } catch let e as NetlinkError {
            #expect(e.isNotFound)
            #expect(e.description.contains("link \(missing)"), "\(e)")
            #expect(e.description.contains("Object not found"), "\(e)")
        }
        #expect(throws: NetlinkError.self) { try NetlinkSocket().configureLink(index: 999_999, up: true) }
    }

    @Test(.enabled(if: Capabilities.canCreateTAP, "needs root and /dev/net/tun"))
    func deleteLinkRemovesATAP() throws {
        let name = uniqueName("d")
        let tap = try TAPDevice(name: name)
        defer { tap.close() }
        let sock = try NetlinkSocket()
        #expect(try sock.linkExists(named: name))
        try sock.deleteLink(named: name)
        #expect(try !sock.linkExists(named: name))
        #expect(throws: NetlinkError.self) { try sock.deleteLink(named: name) }
        // The fd outlives its netdev: I/O fails with a value (EBADFD), no trap.
        var frame = [UInt8](repeating: 0, count: 64)
        #expect(frame.withUnsafeMutableBytes { tap.read(into: $0) } == .failed(EBADFD))
    }
}
