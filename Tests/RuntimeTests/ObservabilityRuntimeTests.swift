import Core
import Foundation
import LinuxIO
import Model
import Observability
@testable import Runtime
import Testing
import TestSupport
import Topology
#if canImport(Glibc)
import Glibc
#endif

/// Wired into the datapath, with socket-pair ports: LLDP from the uplinks reaches
/// the LLDP agent (never a guest) through a bounded inbox; sampled frames land in per-worker
/// flow tables with stable interface IDs; the flow export service keeps tables across
/// unchanged reloads, flushes replaced ones, and counts an unreachable collector.
@Suite(.serialized) struct ObservabilityRuntimeTests {
    static let v10 = VLANID(10)
    static let uplinkSecurity = PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true)
    let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "a.eth0", portGroup: "lan", mode: .access(v10), configuredMAC: mac(0xA)),
        PortPlan(name: "b.eth0", portGroup: "lan", mode: .access(v10), configuredMAC: mac(0xB)),
        PortPlan(name: "u0", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: VLANSet([v10]), native: nil),
                 security: uplinkSecurity, uplinkMember: 0, usesUplinks: false),
        PortPlan(name: "u1", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: VLANSet([v10]), native: nil),
                 security: uplinkSecurity, uplinkMember: 1, usesUplinks: false),
    ], team: TeamConfig(memberCount: 2, policy: .failoverOrder, active: [0], standby: [1]))

    func ports() -> [SocketPairPort] {
        [SocketPairPort(), SocketPairPort(), SocketPairPort(vnetHeaderSize: 0, txVNetHeaderSize: 10), SocketPairPort(vnetHeaderSize: 0, txVNetHeaderSize: 10)]
    }

    static let upstream = LLDPDU(chassisID: .chassisMAC(MACAddress(rawValue: 0x0200_0000_0E01)), portID: .interfaceNamePort("ge-0/0/7"), ttl: 120,
                                 systemName: "core-1", systemDescription: "an upstream switch", managementAddresses: [.ipv4(0xC000_0201)], portVLAN: 10)

    /// Waits until `port` of the running switch has received `n` frames.
    func waitReceived(_ dp: Datapath, port: Int, _ n: UInt64) -> Bool {
        for _ in 0..<200 {
            if dp.withLock({ l in l.switches[0].counters(l).snapshot(port: port).rxFrames }) >= n { return true }
            usleep(5_000)
        }
        return false
    }

    @Test func lldpFromEveryUplinkReachesTheAgentAndNeverAGuest() throws {
        let p = ports()
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)])
        dp.start()
        defer { dp.stop() }
        let frame = LLDP.frame(from: MACAddress(rawValue: 0x0200_0000_0E01), Self.upstream)
        p[2].inject(frame)          // the active member
        p[3].inject(frame)          // the standby member: heard too
        #expect(waitReceived(dp, port: 2, 1) && waitReceived(dp, port: 3, 1))
        #expect(p[0].received(waitingMilliseconds: 100).isEmpty && p[1].received(waitingMilliseconds: 20).isEmpty, "never to a guest")
        #expect(dp.withLock { l in l.switches[0].counters(l).snapshot(port: 2).drops.isEmpty && l.switches[0].counters(l).snapshot(port: 3).drops.isEmpty },
                "consumed, not dropped (no reserved-destination, no team-inactive-uplink)")

        let agent = LLDPAgent(datapath: dp, topologyName: "lab", chassis: "hv1", log: { _ in })
        agent.configure([LLDPAgent.Uplink(switchName: "sw0", nic: "u0", mode: .both, port: p[2], mac: mac(0xC0)),
                         LLDPAgent.Uplink(switchName: "sw0", nic: "u1", mode: .advertise, port: p[3], mac: mac(0xC1))])
        agent.tick()
        let r = agent.report()
        let u0 = try #require(r.uplinks.first { $0.uplink == "u0" })
        let u1 = try #require(r.uplinks.first { $0.uplink == "u1" })
        #expect(u0.received == 1 && u0.neighbors.count == 1 && u1.ignored == 1 && u1.neighbors.isEmpty, "\(r)")
        let n = try #require(u0.neighbors.first)
        #expect(n.chassisId == "02:00:00:00:0e:01" && n.chassisIdType == "mac" && n.portId == "ge-0/0/7" && n.portIdType == "ifname")
        #expect(n.systemName == "core-1" && n.systemDescription == "an upstream switch" && n.managementAddresses == ["192.0.2.1"] && n.portVlan == 10)
        #expect(n.ttlSeconds == 120 && n.expiresInSeconds >= 119)

        // Both uplinks advertise (mode both and advertise): our LLDPDU, with a vnet header.
        for (i, nic, source) in [(2, "u0", mac(0xC0)), (3, "u1", mac(0xC1))] {
            let sent = p[i].received()
            let ours = try #require(sent.first, "no LLDPDU on \(nic)")
            let body = Array(ours.dropFirst(10))
            #expect(Array(body[6..<12]) == source.octets, "sent from the NIC's MAC")
            let du = try body.withUnsafeBytes { try LLDP.parse(frame: $0).get() }
            #expect(du.chassisID == .locallyAssignedChassis("hv1") && du.systemName == "hv1" && du.portID == .interfaceNamePort(nic) && du.ttl == 121)
            #expect(du.systemDescription?.hasPrefix("Tapestry virtual switch, topology lab") == true && du.portDescription == "uplink of switch sw0, topology lab")
        }
        // Shutdown: TTL 0 on each advertising uplink.
        agent.stop()
        for i in [2, 3] {
            let bye = try #require(p[i].received().first)
            #expect(try Array(bye.dropFirst(10)).withUnsafeBytes { try LLDP.parse(frame: $0).get() }.ttl == 0)
        }
    }

    @Test func theInboxIsBoundedAndMalformedLLDPDUsAreCounted() throws {
        let p = ports()
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)])
        dp.start()
        defer { dp.stop() }
        // A 1600-byte "LLDP" frame is over the MTU (decide drops it first); 20 valid ones
        // overflow the 16 slots.
        p[2].inject(FrameBuilder(dst: LLDP.nearestBridge, src: mac(0xEE)).type(LLDP.etherType).payload(1600).bytes)
        for i in 0..<20 {
            var du = Self.upstream
            du.portID = .interfaceNamePort("ge-0/0/\(i)")
            p[2].inject(LLDP.frame(from: mac(0xEE), du))
        }
        #expect(waitReceived(dp, port: 2, 21))
        let (held, dropped, oversize) = dp.withLock { l in
            (l.switches[0].lldpInbox!.count, l.switches[0].lldpInbox!.dropped, l.switches[0].lldpInbox!.oversize)
        }
        #expect(held == LLDPInbox.capacity && dropped == UInt64(20 - LLDPInbox.capacity) && oversize == 0)
        #expect(dp.withLock { l in l.switches[0].counters(l).snapshot(port: 2).drops } == [.oversize: 1])
        // With a jumbo MTU such a frame reaches the inbox, which does not keep it.
        let inbox = LLDPInbox()
        let big = [UInt8](repeating: 0, count: LLDPInbox.slotBytes + 1)
        big.withUnsafeBytes { inbox.put($0, port: 2) }
        #expect(inbox.count == 0 && inbox.oversize == 1)
        let agent = LLDPAgent(datapath: dp, topologyName: "lab", chassis: "hv1", log: { _ in })
        agent.configure([LLDPAgent.Uplink(switchName: "sw0", nic: "u0", mode: .listen, port: p[2], mac: mac(0xC0))])
        agent.tick()
        #expect(agent.report().uplinks.first?.neighbors.count == 8, "at most 8 neighbours per uplink (LLDPNeighborTable)")
        #expect(agent.report().tooManyNeighbors == UInt64(LLDPInbox.capacity - 8))
        // A malformed LLDPDU (no TTL TLV) is discarded with its reason.
        p[2].inject(LLDP.nearestBridge.octets + mac(0xEE).octets + [0x88, 0xCC, 0x02, 0x02, 0x07, 0x61, 0x04, 0x02, 0x05, 0x62, 0, 0] + [UInt8](repeating: 0, count: 34))
        #expect(waitReceived(dp, port: 2, 22))
        agent.tick()
        let u0 = try #require(agent.report().uplinks.first)
        #expect(u0.discarded == 1 && u0.lastDiscard == "bad-ttl" && p[2].received(waitingMilliseconds: 20).isEmpty, "listen only: nothing sent")
        agent.stop()
        #expect(p[2].received(waitingMilliseconds: 50).isEmpty, "a listening uplink never said hello, so no goodbye either")
    }

    // MARK: - IPFIX

    static func spec(port: UInt16, sampling: Int = 1, idle: Int = 15) -> FlowExportSpec {
        FlowExportSpec(collectorHost: "127.0.0.1", collectorPort: Int(port), activeTimeoutSeconds: 60, idleTimeoutSeconds: idle, sampling: sampling)
    }

    /// A UDP socket on 127.0.0.1 standing in for a collector: IPFIX messages it received.
    final class UDPCollector {
        let fd: Int32
        let port: UInt16
        init() {
            let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET); a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
            fd = s
            port = UInt16(bigEndian: a.sin_port)
        }
        deinit { close(fd) }
        /// Messages received within `ms`: (set IDs and their lengths) per message.
        func messages(waitingMilliseconds ms: Int32 = 300) -> [[(id: UInt16, length: Int)]] {
            var out: [[(id: UInt16, length: Int)]] = []
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            while poll(&pfd, 1, out.isEmpty ? ms : 50) > 0 {
                var b = [UInt8](repeating: 0, count: 65536)
                let n = b.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n >= 16, b[0] == 0, b[1] == 10 else { break }
                var sets: [(id: UInt16, length: Int)] = []
                var off = 16
                while off + 4 <= n {
                    let id = UInt16(b[off]) << 8 | UInt16(b[off + 1]), len = Int(b[off + 2]) << 8 | Int(b[off + 3])
                    guard len >= 4 else { break }
                    sets.append((id, len)); off += len
                }
                out.append(sets)
            }
            return out
        }
    }

    /// An empty datapath, the service, and the switch swapped in with its accounting.
    func running(_ spec: FlowExportSpec?, ports p: [SocketPairPort]) throws -> (Datapath, FlowExportService, FlowExportService.Prepared) {
        let dp = try Datapath(switches: [])
        let service = FlowExportService(datapath: dp, workers: 1, capacity: 64, log: { _ in })
        let prepared = service.prepare(plans: [plan], specs: spec.map { ["sw0": $0] } ?? [:])
        let rt = SwitchRuntime(plan: plan, ports: p)
        rt.flows = prepared.accounting["sw0"]
        try dp.replaceSwitches([rt])
        service.commit(prepared)
        dp.start()
        return (dp, service, prepared)
    }

    /// Every flow in the switch's tables, as records (emptying them).
    func flows(_ dp: Datapath, _ a: FlowAccounting) -> [FlowRecord] {
        var out: [FlowRecord] = []
        for t in a.state.tables { out.reserveCapacity(t.capacity); dp.withLock { _ in t.flush(into: &out) } }
        return out
    }

    @Test func forwardedAndFloodedFramesAreAccountedWithStableInterfaceIDs() throws {
        let p = ports()
        let collector = UDPCollector()
        let (dp, service, prepared) = try running(Self.spec(port: collector.port), ports: p)
        defer { dp.stop(); service.stop() }
        let accounting = try #require(prepared.accounting["sw0"])
        let idA = InterfaceRegistry.hash("sw0/a.eth0"), idB = InterfaceRegistry.hash("sw0/b.eth0")
        #expect((0..<4).map { accounting.interfaceIDs[$0] } == ["a.eth0", "b.eth0", "u0", "u1"].map { InterfaceRegistry.hash("sw0/\($0)") })

        p[1].inject(FrameBuilder(dst: .broadcast, src: mac(0xB)).type(EtherType.arp).payload(28).bytes)   // flooded
        for _ in 0..<5 { p[0].inject(FrameBuilder(dst: mac(0xB), src: mac(0xA)).payload(100).bytes) }       // known unicast
        p[0].inject(FrameBuilder(dst: mac(0xB), src: mac(0xA)).tagged(20).bytes)                             // dropped: not a flow
        #expect(waitReceived(dp, port: 0, 6))
        _ = p[1].received(waitingMilliseconds: 50)
        let records = flows(dp, accounting)
        let flood = try #require(records.first { $0.key.sourceMAC == mac(0xB) }, "\(records)")
        #expect(flood.packets == 1 && flood.key.ingressInterface == idB && flood.key.egressInterface == 0 && flood.key.etherType == EtherType.arp)
        let unicast = try #require(records.first { $0.key.sourceMAC == mac(0xA) })
        #expect(unicast.packets == 5 && unicast.octets == 5 * 114 && unicast.key.ingressInterface == idA && unicast.key.egressInterface == idB)
        #expect(unicast.key.vlan == Self.v10 && records.count == 2, "the tagged frame dropped on the access port is no flow")
        let wall = UInt64(Date().timeIntervalSince1970 * 1000)
        #expect(unicast.startMilliseconds > wall - 10_000 && unicast.endMilliseconds <= wall + 1000, "wall-clock milliseconds")
    }

    @Test func samplingIsOneInNPerWorker() throws {
        let p = ports()
        let (dp, service, prepared) = try running(Self.spec(port: 9, sampling: 4), ports: p)
        defer { dp.stop(); service.stop() }
        p[1].inject(FrameBuilder(dst: .broadcast, src: mac(0xB)).bytes)
        for _ in 0..<40 { p[0].inject(FrameBuilder(dst: mac(0xB), src: mac(0xA)).bytes) }
        #expect(waitReceived(dp, port: 0, 40))
        let records = flows(dp, try #require(prepared.accounting["sw0"]))
        #expect(records.reduce(0) { $0 + $1.packets } == 41 / 4, "1 in 4 of the 41 forwarded frames")
    }

    @Test func reloadsKeepTablesAndIDsAndReplacedExportsAreFlushed() throws {
        let p = ports()
        let collector = UDPCollector()
        let (dp, service, first) = try running(Self.spec(port: collector.port), ports: p)
        defer { dp.stop(); service.stop() }
        p[1].inject(FrameBuilder(dst: .broadcast, src: mac(0xB)).bytes)
        #expect(waitReceived(dp, port: 1, 1))
        // The same settings: the same tables (flows continue), the same IDs.
        let same = service.prepare(plans: [plan], specs: ["sw0": Self.spec(port: collector.port)])
        #expect(same.accounting["sw0"]!.state === first.accounting["sw0"]!.state)
        service.commit(same)
        service.tick()
        #expect(collector.messages().contains { $0.contains { $0.id == 2 } }, "templates announced with the first export")
        #expect(service.summaries().first?.flows == 1, "the flow is still tracked")
        // Another sampling: fresh tables; the old ones are flushed (forced end) by the next tick.
        let changed = service.prepare(plans: [plan], specs: ["sw0": Self.spec(port: collector.port, sampling: 2)])
        #expect(changed.accounting["sw0"]!.state !== first.accounting["sw0"]!.state)
        #expect((0..<4).map { changed.accounting["sw0"]!.interfaceIDs[$0] } == (0..<4).map { first.accounting["sw0"]!.interfaceIDs[$0] })
        let rt = SwitchRuntime(plan: plan, ports: p)
        rt.flows = changed.accounting["sw0"]
        try dp.replaceSwitches([rt])
        service.commit(changed)
        service.tick()
        let flushed = collector.messages()
        #expect(flushed.contains { $0.contains { $0.id == 260 } }, "the L2 flow's record (template 260) went out: \(flushed)")
        // Export off: no accounting at all.
        let off = service.prepare(plans: [plan], specs: [:])
        #expect(off.accounting.isEmpty)
    }

    @Test func anUnreachableCollectorIsCountedNotFatal() throws {
        let p = ports()
        // A port nothing listens on: the kernel answers ICMP port unreachable.
        let port = { UDPCollector().port }()   // bound, then closed by its deinit
        let (dp, service, _) = try running(Self.spec(port: port, idle: 1), ports: p)
        defer { dp.stop(); service.stop() }
        p[1].inject(FrameBuilder(dst: .broadcast, src: mac(0xB)).bytes)
        #expect(waitReceived(dp, port: 1, 1))
        // The first send (templates) goes out; the ICMP answer fails the later ones, when
        // the idle flow's record is due.
        for _ in 0..<20 where (service.summaries().first?.sendFailures ?? 0) == 0 { service.tick(); usleep(200_000) }
        let s = try #require(service.summaries().first)
        #expect(s.sendFailures >= 1 && s.collectorUnreachable >= 1 && s.lastError == String(cString: strerror(ECONNREFUSED)), "\(s)")
        p[0].inject(FrameBuilder(dst: .broadcast, src: mac(0xA)).bytes)
        #expect(p[1].received().count == 1, "forwarding goes on")
    }

    @Test func ourChassisIsTheHostNameOrThisMachinesHostsName() throws {
        let file = NSTemporaryDirectory() + "tapestry-rt-chassis-\(getpid()).yaml"
        defer { unlink(file) }
        try "name: solo\nswitches:\n  sw0:\n    port-groups: {web: {vlan: 10}}\n".write(toFile: file, atomically: true, encoding: .utf8)
        let hostName = String(cString: { var b = [CChar](repeating: 0, count: 256); gethostname(&b, 255); return b }())
        #expect(LLDPAgent.chassisName(for: try TopologyLoader.load(path: file)) == hostName)
        // With hosts: the one whose underlay address is on this machine.
        guard let local = HostIdentity.localAddresses().first(where: { $0.contains(".") && !$0.hasPrefix("127.") }) else {
            print("skip: this machine has no non-loopback IPv4 address to name a host by"); return
        }
        let other = local == "192.0.2.200" ? "192.0.2.201" : "192.0.2.200"
        try """
            name: multi
            hosts:
              hv7: {underlay: \(local)}
              hv8: {underlay: \(other)}
            switches:
              sw0:
                port-groups: {web: {vlan: 10}}
            guests:
              g1: {kind: netns, host: hv7, nics: [{switch: sw0, port-group: web}]}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        #expect(LLDPAgent.chassisName(for: try TopologyLoader.load(path: file)) == "hv7")
    }

    @Test func statusAndNeighborsJSONCarryEveryKey() {
        var r = StatusReport(name: "lab", file: "/x.yaml", pid: 1, uptimeSeconds: 3, datapathThreads: 1, busyPollMicroseconds: 0,
                             datapathFrames: [1], switches: [], guests: [])
        r.flowExport = [FlowExportSummary(switch: "sw0", collector: "192.0.2.1:4739", observationDomain: 7, sampling: 1, activeTimeoutSeconds: 60, idleTimeoutSeconds: 15)]
        guard case .object(let doc) = JSONDocuments.status(r), case .array(let list)? = doc["flow_export"], case .object(let f)? = list.first else {
            Issue.record("no flow_export"); return
        }
        #expect(Set(f.keys) == ["switch", "collector", "observation_domain", "sampling", "active_timeout_seconds", "idle_timeout_seconds", "flows",
                                "accounted_frames", "not_tracked_frames", "records_exported", "messages_sent", "send_failures",
                                "collector_unreachable", "records_lost", "last_error"])
        #expect(f["last_error"] == .null)
        var t = LLDPNeighborTable()
        t.receive(Self.upstream, on: "eth1", now: 0)
        let n = NeighborsReport(chassis: "hv1", uplinks: [.init(switch: "sw0", uplink: "eth1", lldp: "listen", received: 1, ignored: 0, discarded: 0,
                                                                lastDiscard: nil, sent: 0, sendFailures: 0,
                                                                neighbors: [LLDPNeighborRow(t.neighbors(on: "eth1")[0], now: 1000)])],
                                tooManyNeighbors: 0, ageouts: 0)
        guard case .object(let nd) = JSONDocuments.neighbors(n), case .array(let ups)? = nd["uplinks"], case .object(let u)? = ups.first,
              case .array(let ns)? = u["neighbors"], case .object(let row)? = ns.first else { Issue.record("no uplinks"); return }
        #expect(nd["schema_version"] != nil && nd["chassis"] == .string("hv1") && u["last_discard"] == .null)
        #expect(Set(row.keys) == ["uplink", "chassis_id", "chassis_id_type", "port_id", "port_id_type", "system_name", "system_description",
                                  "port_description", "management_addresses", "port_vlan", "capabilities", "ttl_seconds", "age_seconds", "expires_in_seconds"])
        #expect(row["port_description"] == .null && row["port_vlan"] == .int(10))
    }
}
