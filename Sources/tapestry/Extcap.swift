import ArgumentParser
import Foundation
import Runtime

/// `tapestry extcap`: Wireshark's extcap interface (https://www.wireshark.org/docs/man-pages/extcap.html),
/// so `tshark -D` lists every port of every running topology as `tapestry:NAME/PORT` and
/// `tshark -i tapestry:NAME/PORT` captures from it. An instance of a topology that spans
/// hosts is `NAME@HOST`: `tapestry:fab@h1/h2` is host h1's tunnel port to h2, and
/// two hosts of one topology on one machine list apart.
///
/// Wireshark runs each program in its extcap directory with `--extcap-interfaces`, and no
/// subcommand, so `Scripts/install-extcap.sh` installs a two-line wrapper that execs
/// `tapestry extcap "$@"`. Capturing is `tapestry capture` itself (the same control-socket
/// stream and pcapng writer), pointed at the FIFO Wireshark gives: nothing is duplicated.
struct Extcap: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wireshark's extcap interface: every port of every running topology as tapestry:NAME/PORT.",
        discussion: """
        Wireshark and tshark run it (Scripts/install-extcap.sh installs a wrapper in their extcap \
        directory); it is not meant to be run by hand. Members of the group 'tapestry' may list \
        ports and capture without root.
        """)

    @Flag(name: .customLong("extcap-interfaces"), help: "List the interfaces (every port of every running topology).") var listInterfaces = false
    @Option(name: .customLong("extcap-version"), help: "Wireshark's version (ignored).") var wiresharkVersion: String?
    @Option(name: .customLong("extcap-interface"), help: "tapestry:NAME/PORT") var interface: String?
    @Flag(name: .customLong("extcap-dlts"), help: "List the link types of --extcap-interface.") var listDLTs = false
    @Flag(name: .customLong("extcap-config"), help: "List the capture options of --extcap-interface.") var listConfig = false
    @Option(name: .customLong("extcap-reload-option"), help: "Ignored (no option has reloadable values).") var reloadOption: String?
    @Flag(help: "Capture from --extcap-interface into --fifo.") var capture = false
    @Option(help: "The FIFO Wireshark reads pcapng from.") var fifo: String?
    @Option(name: .customLong("extcap-capture-filter"), help: "A BPF filter (tcpdump syntax).") var captureFilter: String?
    @Option(name: .customLong("extcap-control-in"), help: "Ignored (no toolbar controls).") var controlIn: String?
    @Option(name: .customLong("extcap-control-out"), help: "Ignored (no toolbar controls).") var controlOut: String?
    @Flag(help: "Ignored.") var debug = false
    @Option(name: .customLong("debug-file"), help: "Ignored.") var debugFile: String?
    @Option(help: "in (as received), out (as sent) or both.") var direction: String = "both"
    @Flag(help: "Dropped frames only, each with its reason.") var drops = false

    /// The interface name for a port of instance `stem` (`NAME` or `NAME@HOST`):
    /// `tapestry:STEM/PORT`.
    static func interfaceName(instance stem: String, port: String) -> String { "tapestry:\(stem)/\(port)" }

    /// `tapestry:NAME/PORT` or `tapestry:NAME@HOST/PORT` → (the instance, PORT); nil when the
    /// name is not one (`InstanceIdentity(stem:)`).
    static func parse(interface: String) -> (instance: InstanceIdentity, port: String)? {
        guard interface.hasPrefix("tapestry:") else { return nil }
        let rest = interface.dropFirst("tapestry:".count)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let stem = String(rest[..<slash]), port = String(rest[rest.index(after: slash)...])
        guard !port.isEmpty, let id = InstanceIdentity(stem: stem) else { return nil }
        return (id, port)
    }

    func validate() throws {
        if !["in", "out", "both"].contains(direction) { throw ValidationError("--direction must be in, out or both") }
        if (listDLTs || listConfig || capture) && interface == nil { throw ValidationError("--extcap-interface is required") }
        if capture && fifo == nil { throw ValidationError("--capture needs --fifo") }
    }

    func run() throws {
        if listInterfaces { return printInterfaces() }
        guard let iface = interface else { throw ValidationError("nothing to do: give --extcap-interfaces, or --extcap-interface with --extcap-dlts, --extcap-config or --capture") }
        guard let (instance, port) = Extcap.parse(interface: iface) else {
            throw Failure(message: "not a tapestry interface: '\(iface)' (expected tapestry:NAME/PORT or tapestry:NAME@HOST/PORT)")
        }
        if listDLTs {
            print("dlt {number=1}{name=EN10MB}{display=Ethernet}")
            return
        }
        if listConfig {
            print("arg {number=0}{call=--direction}{display=Direction}{tooltip=Capture point: as received from the port (before VLAN processing), as sent to it (after tagging), or both}{type=selector}")
            print("value {arg=0}{value=both}{display=in and out}{default=true}")
            print("value {arg=0}{value=in}{display=in (as received)}{default=false}")
            print("value {arg=0}{value=out}{display=out (as sent)}{default=false}")
            print("arg {number=1}{call=--drops}{display=Dropped frames only}{tooltip=Only frames the switch dropped, with the reason as the packet comment}{type=boolflag}{default=false}")
            return
        }
        guard capture, let fifo else { return }
        // The port's switch: ports are unique within a topology, `capture` wants the switch.
        let ports: PortsReport
        do {
            ports = try JSON.decoder().decode(PortsReport.self, from: controlRequest(name: instance.stem, ControlRequest(command: "ports"), timeout: 5))
        } catch { throw Failure(message: "\(error)") }
        guard let row = ports.ports.first(where: { $0.name == port }) else {
            throw Failure(message: "\(instance) has no port '\(port)'")
        }
        var args = ["--name", instance.name] + (instance.host.map { ["--host", $0] } ?? [])
            + ["--switch", row.switch, "--port", port, "--direction", direction, "-w", fifo]
        if drops { args.append("--drops") }
        if let f = captureFilter, !f.trimmingCharacters(in: .whitespaces).isEmpty { args += ["--filter", f] }
        let command = try CaptureCommand.parse(args)
        try command.run()
    }

    /// One `interface` line per port of every running instance we may talk to (`NAME`, or
    /// `NAME@HOST` for a host of a topology that spans hosts); instances we cannot reach (not
    /// root, crashed) are skipped with a note on standard error, which Wireshark shows in
    /// its log.
    func printInterfaces() {
        print("extcap {version=1.0}{display=Tapestry virtual switch}")
        // A crashed instance is skipped; one whose state a member of the `tapestry` group
        // cannot read is asked anyway (its daemon decides).
        for name in RunDirectory.knownInstances() where InstanceState.read(name: name)?.isAlive ?? true {
            do {
                let data = try controlRequest(name: name, ControlRequest(command: "ports"), timeout: 2)
                let report = try JSON.decoder().decode(PortsReport.self, from: data)
                let id = InstanceIdentity(stem: name)
                let display = id.map { i in i.host.map { "\(i.name) on host \($0)" } ?? i.name } ?? name
                for p in report.ports {
                    let kind = p.kind == "uplink" ? "uplink" : p.kind == "tunnel" ? "tunnel" : "port group \(p.portGroup)"
                    print("interface {value=\(Extcap.interfaceName(instance: name, port: p.name))}{display=Tapestry \(display) \(p.name) (switch \(p.switch), \(kind))}")
                }
            } catch {
                FileHandle.standardError.write(Data("tapestry extcap: topology '\(name)': \(error)\n".utf8))
            }
        }
    }
}
