import ArgumentParser
import Foundation
import Runtime

/// `tapestry mdb`: the multicast group table (IGMP/MLD snooping), like `bridge mdb` and
/// `ovs-appctl mdb/show`. JSON keys: `MDBReport` (README, "Multicast snooping").
struct MDB: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mdb",
        abstract: "The multicast group table: VLAN, group, port, age; router ports and queriers (IGMP/MLD snooping).")
    @OptionGroup var options: NameOption
    @Option(name: .customLong("switch"), help: "Only this switch.") var switchName: String?
    @Flag(help: "Print JSON (stable keys).") var json = false

    func run() throws {
        let (r, data) = try request(options.name, ControlRequest(command: "mdb", switch: switchName), as: MDBReport.self)
        if json { _ = data; return printJSON(JSONDocuments.mdb(r)) }
        if r.tables.isEmpty {
            print("no switch has multicast snooping (multicast-snooping: true)")
            return
        }
        print(table(["SWITCH", "VLAN", "GROUP", "PORT", "AGE", "EXPIRES", "TYPE"], r.entries.map {
            [$0.switch, $0.vlan, $0.group, $0.port, "\($0.ageSeconds)", $0.expiresSeconds.map { "\($0)" } ?? "-", $0.type]
        }))
        if !r.routers.isEmpty {
            print("router ports:")
            print(table(["SWITCH", "VLAN", "PORT", "TYPE", "EXPIRES"], r.routers.map {
                [$0.switch, $0.vlan ?? "all", $0.port, $0.type, $0.expiresSeconds.map { "\($0)" } ?? "-"]
            }).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        }
        for q in r.queriers {
            print("querier \(q.switch) vlan \(q.vlan) \(q.family): " + (q.role == "querier"
                ? "this switch (\(q.address ?? "?")), next query in \(q.nextQuerySeconds ?? 0)s"
                : "another querier holds the role (\(q.address ?? "?"))"))
        }
        for t in r.tables {
            print("\(t.switch): \(t.groups)/\(t.groupCapacity) groups, \(t.memberships)/\(t.membershipCapacity) memberships, "
                  + "\(t.routers)/\(t.routerCapacity) router entries, membership interval \(t.membershipIntervalSeconds)s"
                  + (t.refusedJoins + t.refusedRouters > 0 ? ", refused: \(t.refusedJoins) joins, \(t.refusedRouters) router entries (table full)" : ""))
        }
    }
}
