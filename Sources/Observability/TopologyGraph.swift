import Core
import Model
import Topology

/// What a running instance adds to the picture: link and team state. Every field is
/// optional; an empty state draws the file alone.
public struct GraphState: Equatable, Sendable {
    /// Uplink NIC name → team role as `tapestry ports` shows it (`active`, `standby`,
    /// `down (no-carrier)`, `unused`).
    public var uplinkRoles: [String: String]
    /// Guest port name (`web1.eth0`) → link state (`up`, `down`).
    public var portLinks: [String: String]
    /// QEMU guest name → VM state (`running`, `backing-off`, …).
    public var vmStates: [String: String]

    public init(uplinkRoles: [String: String] = [:], portLinks: [String: String] = [:], vmStates: [String: String] = [:]) {
        self.uplinkRoles = uplinkRoles; self.portLinks = portLinks; self.vmStates = vmStates
    }
}

/// A Graphviz DOT picture of a topology: a pure function of the `Topology` model and an
/// optional `GraphState`.
///
/// ```
///  cluster "switch sw0" ─┬─ port group nodes (name, VLAN mode, "no uplinks", security)
///                        ├─ the switch node (name, MTU, MAC table)
///                        └─ uplink NIC nodes (team policy; role when running, coloured)
///  guest nodes (netns: box, qemu: box3d) ── one edge per NIC ──▶ its port group
///  mirrors: dashed edges source group ──▶ destination group
/// ```
/// Node IDs are namespaced (`switch:sw0`, `group:sw0/web`, `uplink:sw0/eth1`, `guest:web1`)
/// so that a guest and a switch of the same name never collide; `dot -Tsvg` writes them as
/// each node's `<title>`. New topology keys extend the label functions here, nothing else.
public enum TopologyGraph {
    /// The DOT source (`digraph`, left to right).
    public static func dot(_ t: Topology, state: GraphState = GraphState()) -> String {
        var out: [String] = []
        out.append("digraph \(quote("tapestry " + t.name)) {")
        out.append("  graph [rankdir=LR, fontname=\"Helvetica\", label=\(quote("topology " + t.name)), labelloc=t];")
        out.append("  node [fontname=\"Helvetica\", fontsize=10];")
        out.append("  edge [fontname=\"Helvetica\", fontsize=9];")
        for s in t.switches {
            out.append("  subgraph \(quote("cluster_" + s.name)) {")
            out.append("    label=\(quote("switch " + s.name)); style=rounded; color=\"#4a6fa5\";")
            out.append("    \(quote(switchID(s.name))) [shape=component, style=filled, fillcolor=\"#dbe7f6\", label=\(quote(switchLabel(s)))];")
            for g in s.portGroups {
                out.append("    \(quote(groupID(s.name, g.name))) [shape=ellipse, style=filled, fillcolor=\"#eef3e2\", label=\(quote(groupLabel(g)))];")
                out.append("    \(quote(groupID(s.name, g.name))) -> \(quote(switchID(s.name))) [arrowhead=none];")
            }
            if let u = s.uplinks {
                for nic in u.nics {
                    let role = state.uplinkRoles[nic]
                    let label = nic + "\n" + (role ?? (u.active.contains(nic) ? "active (configured)" : "standby (configured)"))
                    out.append("    \(quote(uplinkID(s.name, nic))) [shape=cds, style=filled, fillcolor=\(quote(roleColour(role))), label=\(quote(label))];")
                    out.append("    \(quote(switchID(s.name))) -> \(quote(uplinkID(s.name, nic))) [label=\(quote(u.policy.rawValue)), arrowhead=none];")
                }
            }
            for m in s.mirrors {
                for src in m.sourcePortGroups {
                    out.append("    \(quote(groupID(s.name, src))) -> \(quote(groupID(s.name, m.destinationPortGroup))) [style=dashed, color=\"#888888\", label=\(quote("mirror \(m.name) (\(m.direction.rawValue))"))];")
                }
            }
            out.append("  }")
        }
        for g in t.guests {
            let vm = state.vmStates[g.name]
            let shape = g.kind == .qemu ? "box3d" : "box"
            let label = g.name + "\n" + g.kind.rawValue + (vm.map { " (\($0))" } ?? "")
            out.append("  \(quote(guestID(g.name))) [shape=\(shape), style=filled, fillcolor=\(quote(g.kind == .qemu ? "#f6e7db" : "#ffffff")), label=\(quote(label))];")
            for n in g.nics {
                var label = n.interfaceName + "\n" + n.mac.description
                if let ip = n.ip { label += "\n" + ip.description }
                let link = state.portLinks[n.portName]
                let style = link.map { $0 == "up" ? "solid" : "dotted" } ?? "solid"
                out.append("  \(quote(guestID(g.name))) -> \(quote(groupID(n.switchName, n.portGroup))) [label=\(quote(label)), style=\(style), tooltip=\(quote(n.portName))];")
            }
        }
        out.append("}")
        return out.joined(separator: "\n") + "\n"
    }

    public static func switchID(_ s: String) -> String { "switch:" + s }
    public static func groupID(_ s: String, _ g: String) -> String { "group:\(s)/\(g)" }
    public static func uplinkID(_ s: String, _ nic: String) -> String { "uplink:\(s)/\(nic)" }
    public static func guestID(_ g: String) -> String { "guest:" + g }

    static func switchLabel(_ s: SwitchSpec) -> String {
        "\(s.name)\nMTU \(s.mtu)\nMAC table \(s.macLimit), aging \(s.agingSeconds)s" + (s.uplinks == nil ? "\nguest-only" : "")
    }

    static func groupLabel(_ g: PortGroupSpec) -> String {
        var lines = [g.name, vlanText(g.mode)]
        if !g.usesUplinks { lines.append("no uplinks") }
        var security: [String] = []
        if g.security.promiscuous { security.append("promiscuous") }
        if g.security.macChanges { security.append("mac-changes") }
        if g.security.forgedTransmits { security.append("forged-transmits") }
        if !security.isEmpty { lines.append("allows " + security.joined(separator: ", ")) }
        if g.l2Transparency { lines.append("l2-transparency") }
        return lines.joined(separator: "\n")
    }

    /// The VLAN mode as the topology file writes it: `VLAN 10`, `untagged (none)`,
    /// `trunk 10,20,100-199 native 10`.
    static func vlanText(_ m: PortMode) -> String {
        switch m {
        case .access(let v): return v.isUntaggedDomain ? "untagged (none)" : "VLAN \(v)"
        case .trunk(let allowed, let native): return "trunk \(allowed.rangesDescription)" + " native \(native.map { $0.description } ?? "none")"
        }
    }

    static func roleColour(_ role: String?) -> String {
        guard let r = role else { return "#ffffff" }
        if r.hasPrefix("active") { return "#c8e6c9" }
        if r.hasPrefix("standby") { return "#fff3c4" }
        if r.hasPrefix("down") { return "#f4c7c3" }
        return "#eeeeee"
    }

    /// A DOT double-quoted string: `"` and `\` escaped, line feeds as `\n` (centred lines).
    public static func quote(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": break
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }
}
