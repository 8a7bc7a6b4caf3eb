import ArgumentParser
import Foundation
import Runtime

/// `tapestry neighbors`: what the physical switches said by LLDP on each uplink, like
/// `lldpcli show neighbors` or the distributed switch's "link discovery". JSON keys:
/// `NeighborsReport` (README, "LLDP").
struct Neighbors: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "LLDP neighbours per uplink: the upstream switch's chassis, port, system name and description, management address, port VLAN, TTL.",
        discussion: "Uplinks with lldp: listen or both record what they hear; advertise and both send ours (chassis: the host name, or the hosts: name; port: the NIC's name).")
    @OptionGroup var options: NameOption
    @OptionGroup var sw: SwitchOption
    @Flag(help: "Print JSON (stable keys).") var json = false

    func run() throws {
        let r = try request(options, ControlRequest(command: "neighbors", switch: sw.switchName), as: NeighborsReport.self)
        if json { return printJSON(JSONDocuments.neighbors(r)) }
        if r.uplinks.isEmpty {
            print("no uplinks (LLDP runs on the NICs of a switch's uplinks)")
            return
        }
        var rows: [[String]] = []
        for u in r.uplinks {
            if u.neighbors.isEmpty {
                rows.append([u.switch, u.uplink, u.lldp, u.lldp == "listen" || u.lldp == "both" ? "(none heard)" : "(not listening)", "-", "-", "-", "-", "-"])
            }
            for n in u.neighbors {
                rows.append([u.switch, u.uplink, u.lldp, "\(n.chassisId) (\(n.chassisIdType))", "\(n.portId) (\(n.portIdType))",
                             n.systemName ?? "-", n.managementAddresses.first ?? "-", n.portVlan.map(String.init) ?? "-", "\(n.expiresInSeconds)s"])
            }
        }
        print(table(["SWITCH", "UPLINK", "LLDP", "CHASSIS", "PORT", "SYSTEM", "MGMT", "PVID", "EXPIRES"], rows))
        for u in r.uplinks {
            for n in u.neighbors {
                if let d = n.systemDescription { print("\(u.uplink): \(n.systemName ?? n.chassisId): \(d)") }
            }
        }
        let sent = r.uplinks.filter { $0.lldp == "advertise" || $0.lldp == "both" }.map(\.uplink)
        if !sent.isEmpty { print("advertising chassis '\(r.chassis)' on \(sent.joined(separator: ", "))") }
        for u in r.uplinks where u.discarded > 0 || u.sendFailures > 0 {
            print("\(u.uplink): \(u.discarded) malformed LLDPDU(s)\(u.lastDiscard.map { " (last: \($0))" } ?? ""), \(u.sendFailures) send failure(s)")
        }
    }
}
