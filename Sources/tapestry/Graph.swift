import ArgumentParser
import Foundation
import Observability
import Runtime
import Topology

/// `tapestry graph FILE | --name N [--format svg|dot] [-o FILE]`: the topology as a picture.
struct GraphCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph",
        abstract: "Draw a topology: switches, port groups with their VLANs, guests, uplinks (with team and link state when running).",
        discussion: "SVG is rendered by Graphviz's 'dot' (Debian package graphviz); --format dot prints the DOT source and needs nothing.")
    @Argument(help: "A topology file (YAML). Without it, the running topology (--name when several run).") var file: String?
    @OptionGroup var options: NameOption
    @Option(help: "svg or dot.") var format: String = "svg"
    @Option(name: .customShort("o"), help: "Write to this file instead of standard output.") var output: String?

    func validate() throws {
        if !["svg", "dot"].contains(format) { throw ValidationError("--format must be svg or dot") }
        if file != nil && options.name != nil { throw ValidationError("give a FILE or --name, not both") }
    }

    func run() throws {
        let topology: Topology
        var state = GraphState()
        if let f = file {
            topology = try loadTopology(f, hostChecks: false)
        } else {
            let instance = try resolveInstance(options.name)
            guard let recorded = InstanceState.read(name: instance) else { throw Failure(message: "topology '\(instance)' is not running") }
            topology = try loadTopology(recorded.file, hostChecks: false, printWarnings: false)
            let (ports, _) = try request(instance, ControlRequest(command: "ports"), as: PortsReport.self)
            for p in ports.ports {
                if p.kind == "uplink" { state.uplinkRoles[p.name] = p.link } else { state.portLinks[p.name] = p.link }
            }
            if let (status, _) = try? request(instance, ControlRequest(command: "status"), as: StatusReport.self) {
                for g in status.guests { if let vm = g.vm { state.vmStates[g.name] = vm.state.rawValue } }
            }
        }
        let dot = TopologyGraph.dot(topology, state: state)
        var bytes = Data(dot.utf8)
        if format == "svg" { bytes = try renderSVG(bytes) }
        if let path = output {
            do { try bytes.write(to: URL(fileURLWithPath: path)) } catch { throw Failure(message: "cannot write \(path): \(error.localizedDescription)") }
        } else {
            FileHandle.standardOutput.write(bytes)
        }
    }

    /// Pipes DOT through `dot -Tsvg`.
    func renderSVG(_ dot: Data) throws -> Data {
        guard let path = ["/usr/bin/dot", "/usr/local/bin/dot"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw Failure(message: "Graphviz 'dot' not found (apt-get install graphviz), or use --format dot")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = ["-Tsvg"]
        let input = Pipe(), out = Pipe(), err = Pipe()
        p.standardInput = input; p.standardOutput = out; p.standardError = err
        try p.run()
        // Write from another thread: dot may fill its output pipe before reading all input.
        let writer = Thread { input.fileHandleForWriting.write(dot); try? input.fileHandleForWriting.close() }
        writer.start()
        let svg = out.fileHandleForReading.readDataToEndOfFile()
        let message = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw Failure(message: "dot failed: \(String(decoding: message, as: UTF8.self))")
        }
        return svg
    }
}
