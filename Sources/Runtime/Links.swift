import Core
import LinuxIO
import Topology

/// Patch links between switches (`links:`): each link is a `PatchPort` pair, one
/// end a port of each switch, made and retired by `apply` like any other port.
///
/// Port I/O is kept by name in `portsByName`. Guest ports (`GUEST.ethN`) and uplinks (NIC
/// names) are unique across switches; link port names are not (`sw0/link-sw1` and
/// `sw2/link-sw1`), so a link port's I/O is kept under `SWITCH/PORT` (a `/` appears in no
/// other port name).
extension Fabric {
    /// The key of a port's I/O in `portsByName`: `SWITCH/PORT` for a link or tunnel port
    /// (a tunnel `h2` exists on every switch spanning to host h2), its name otherwise.
    static func ioKey(_ port: PortPlan, on switchName: String) -> String {
        port.isLink || port.isTunnel ? "\(switchName)/\(port.name)" : port.name
    }

    /// The `portsByName` keys of both ends of each link.
    static func linkPortKeys(_ links: [LinkSpec]) -> [String] {
        links.flatMap { $0.ends.map { "\($0.switchName)/\($0.portName)" } }
    }

    /// A joined `PatchPort` pair per link, by `ioKey`, with one queue per datapath worker
    /// (each ring then has one writer and one reader; see `PatchPort`).
    func makeLinkPorts(_ links: [LinkSpec]) throws -> [String: PortIO] {
        var out: [String: PortIO] = [:]
        for l in links where l.ends.count == 2 {
            let keys = Fabric.linkPortKeys([l])
            let (a, b) = try PatchPort.pair(labels: (keys[0], keys[1]), queues: datapathThreads)
            out[keys[0]] = a
            out[keys[1]] = b
        }
        if !links.isEmpty { log("links: " + links.map { $0.ends.map { "\($0.switchName)/\($0.portName)" }.joined(separator: " ↔ ") }.joined(separator: ", ")) }
        return out
    }
}
