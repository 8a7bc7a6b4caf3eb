import FabricStore
import Foundation
import Testing
import Topology
import VMRunner
@testable import Runtime

/// The pure parts of the fabric's wiring: what the runtime tells the fabric store
/// about a file, how the placement adjusts a host's part, and the documents `status`,
/// `vm list` and `vm migrate` print. No etcd here (VMotionSystemTests runs the real thing).
@Suite struct FabricHATests {
    static let yaml = """
    name: fab
    hosts:
      h1: {underlay: 10.77.0.1, cpus: 4, memory: 2G}
      h2: {underlay: 10.77.0.2, cpus: 2, memory: 1G}
      h3: {underlay: 10.77.0.3}
    etcd: {endpoints: ["http://10.77.0.100:2379"]}
    switches:
      sw0: {overlay: {vni: 7000}, port-groups: {web: {vlan: 10}}}
      sw1: {port-groups: {db: {vlan: 20}}}
    guests:
      a: {kind: netns, host: h1, restart: on-failure, nics: [{switch: sw0, port-group: web}]}
      b: {kind: netns, host: h2, nics: [{switch: sw0, port-group: web}, {switch: sw1, port-group: db}]}
      c: {kind: netns, host: h3, nics: [{switch: sw0, port-group: web}]}
      vm: {kind: qemu, host: h1, memory: 512M, cpus: 2, restart: always, nics: [{switch: sw0, port-group: web, backend: tap}]}
      vm2: {kind: qemu, host: h1, nics: [{switch: sw1, port-group: db, backend: tap}]}
    """

    @Test func fabricSpecCarriesCapacityRestartAndSwitches() throws {
        let t = try TopologyLoader.parse(Self.yaml, file: "fab.yaml")
        let spec = Fabric.fabricSpec(of: t, hash: "abc")
        #expect(spec.topology == "fab" && spec.topologyHash == "abc")
        #expect(spec.hosts["h1"] == FabricHost(name: "h1", underlay: "10.77.0.1", cpus: 4, memoryMiB: 2048, switches: ["sw0", "sw1"]))
        #expect(spec.hosts["h2"]?.switches == ["sw0", "sw1"] && spec.hosts["h3"]?.switches == ["sw0"])
        #expect(spec.hosts["h3"]?.cpus == nil && spec.hosts["h3"]?.memoryMiB == nil)
        #expect(spec.guests["vm"] == FabricGuest(name: "vm", kind: .qemu, host: "h1", cpus: 2, memoryMiB: 512, restart: .always, switches: ["sw0"]))
        #expect(spec.guests["a"] == FabricGuest(name: "a", kind: .netns, host: "h1", cpus: 0, memoryMiB: 0, restart: .onFailure, switches: ["sw0"]))
        #expect(spec.guests["b"]?.restart == .never && spec.guests["b"]?.isRestartedByHA == false)
        #expect(spec.guests["vm2"]?.switches == ["sw1"])
    }

    @Test func placementAdjustsTheHostsPart() throws {
        let t = try TopologyLoader.parse(Self.yaml, file: "fab.yaml")
        let f = Fabric(topology: t, host: "h1", settings: DatapathSettings(threads: 1, busyPollMicroseconds: 0), log: { _ in })
        #expect(try f.runningPart(of: t).topology.guests.map(\.name) == ["a", "vm", "vm2"])
        f.notHere = ["vm"]
        f.movedHere = ["c", "b"]
        // c (sw0) can come; b needs sw1, which runs on h1 too (vm2's NIC): it comes as well.
        #expect(Set(try f.runningPart(of: t).topology.guests.map(\.name)) == ["a", "vm2", "c", "b"])
        let h3 = Fabric(topology: t, host: "h3", settings: DatapathSettings(threads: 1, busyPollMicroseconds: 0), log: { _ in })
        h3.movedHere = ["b"]
        #expect(try h3.runningPart(of: t).topology.guests.map(\.name) == ["c"], "b's sw1 does not run on h3: it stays out")
        #expect(f.tapStem(t) == "fab@h1", "TAP names of a multi-host instance carry the host")
        #expect(Fabric.hostTAPName(topology: "fab@h1", guest: "vm", nic: 0) != Fabric.hostTAPName(topology: "fab@h2", guest: "vm", nic: 0))
    }

    @Test func listenAddressesSplit() {
        #expect(Fabric.splitHostPort("10.77.0.2:40000")! == ("10.77.0.2", 40000))
        #expect(Fabric.splitHostPort("[fd77::2]:41000")! == ("fd77::2", 41000))
        #expect(Fabric.splitHostPort("10.77.0.2") == nil && Fabric.splitHostPort(":1") == nil && Fabric.splitHostPort("a:99999") == nil)
    }

    static func report(full: Bool) -> FabricReport {
        FabricReport(host: "h1", registered: full, lease: full ? "3dbe" : nil, isolated: false, etcdEndpoints: ["http://10.77.0.100:2379"],
                     topologyHash: "abc",
                     hosts: [.init(name: "h1", alive: true, underlay: "10.77.0.1", pid: full ? 7 : nil, topologyHash: full ? "abc" : nil,
                                   sameTopology: true, guests: ["a"]),
                             .init(name: "h2", alive: false, underlay: "10.77.0.2", pid: nil, topologyHash: full ? "def" : nil,
                                   sameTopology: !full, guests: [])],
                     unplaceable: full ? ["vm": "fits on no surviving host"] : [:], withheld: [:], lastError: full ? "etcd: unavailable" : nil,
                     migrations: full ? [.init(guest: "vm", from: "h1", to: "h2", state: "ready", error: nil)] : [],
                     lastReadSecondsAgo: full ? 0.4 : nil)
    }

    @Test func statusShowsTheFabricWithEveryKey() {
        let base = StatusReport(name: "fab", file: "/f.yaml", pid: 1, uptimeSeconds: 3, datapathThreads: 1, busyPollMicroseconds: 0,
                                datapathFrames: [1], switches: [], guests: [])
        #expect(JSONDocuments.status(base)["fabric"] == .null, "without etcd: null")
        var sparse = base, full = base
        sparse.fabric = Self.report(full: false)
        full.fabric = Self.report(full: true)
        guard case .object(let s)? = JSONDocuments.status(sparse)["fabric"], case .object(let f)? = JSONDocuments.status(full)["fabric"] else {
            Issue.record("no fabric object"); return
        }
        #expect(Set(s.keys) == Set(f.keys))
        #expect(f["topology_mismatches"] == .array([.string("h2")]) && s["topology_mismatches"] == .array([]))
        #expect(s["lease"] == .null && f["lease"] == .string("3dbe"))
        guard case .array(let hosts)? = f["hosts"], case .object(let h2) = hosts[1] else { Issue.record("no hosts"); return }
        #expect(h2["alive"] == .bool(false) && h2["same_topology"] == .bool(false) && h2["guests"] == .array([]))
        guard case .array(let migrations)? = f["migrations"], case .object(let m) = migrations[0] else { Issue.record("no migrations"); return }
        #expect(m["state"] == .string("ready") && m["error"] == .null)
    }

    @Test func vmListCarriesTheHostAndMigrationReportsItsFigures() {
        let v = VMStatus(name: "vm", state: .running, pid: 3, accel: .tcg, consoleSocket: "/s", consoleLog: "/l")
        #expect(JSONDocuments.vm(v)["host"] == .null)
        guard case .array(let vms)? = JSONDocuments.vmList([v], host: "h2")["vms"], case .object(let one) = vms[0] else { Issue.record("no vms"); return }
        #expect(one["host"] == .string("h2"))
        let r = MigrationReport(guest: "vm", from: "h1", to: "h2", totalSeconds: 1.2, qemuTotalMilliseconds: 480, qemuDowntimeMilliseconds: nil,
                                transferredBytes: 65_000_000, commitMilliseconds: 2.5, backend: "tap")
        let doc = JSONDocuments.migration(r)
        #expect(doc["qemu_downtime_milliseconds"] == .null && doc["qemu_total_milliseconds"] == .int(480) && doc["total_seconds"] == .double(1.2))
        #expect(doc.keys == ["backend", "commit_milliseconds", "from", "guest", "qemu_downtime_milliseconds", "qemu_total_milliseconds",
                             "schema_version", "to", "total_seconds", "transferred_bytes"])
    }
}
