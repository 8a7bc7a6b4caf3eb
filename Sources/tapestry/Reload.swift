import ArgumentParser
import Foundation
import Runtime
import Topology

struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Apply a changed topology file to the running topology, as a diff; untouched ports keep forwarding.")
    @Argument(help: "Topology file (YAML).") var file: String
    @OptionGroup var options: NameOption

    func run() throws {
        // Validate here first: located errors, and nothing is sent.
        let t = try loadTopology(file)
        let absolute = file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file
        // Without --name: the file's own topology when it runs, else the only one running.
        var target = options
        if target.name == nil && InstanceState.read(stem: t.name)?.isAlive == true { target.name = t.name }
        if target.name == nil && target.host != nil { target.name = t.name }
        let instance = try resolveInstance(target)
        let data: Data
        do {
            data = try controlRequest(name: instance, ControlRequest(command: "reload", file: absolute), timeout: 120)
        } catch let e as RuntimeError {
            // The daemon's own diagnostics (located errors) are shown as they are.
            FileHandle.standardError.write(Data("tapestry: reload failed, nothing changed unless stated:\n\(e.description)\n".utf8))
            throw ExitCode(1)
        }
        let r = try JSON.decoder().decode(ReloadReport.self, from: data)
        print("topology '\(r.name)' reloaded from \(r.file): \(r.summary)")
    }
}
