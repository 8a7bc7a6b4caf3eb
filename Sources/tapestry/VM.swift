import ArgumentParser
import Foundation
import Runtime
import Topology
import VMRunner
#if canImport(Glibc)
import Glibc
#endif

/// `tapestry vm list | console VM | start VM | stop VM | restart VM`.
struct VMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm",
        abstract: "The VM runner: list QEMU guests, attach to a console, start, stop, restart or live-migrate one.",
        subcommands: [List.self, ConsoleCommand.self, Start.self, Stop.self, Restart.self, Migrate.self])

    static func rows(_ list: [VMStatus]) -> String {
        table(["VM", "STATE", "PID", "ACCEL", "UPTIME", "BOOT", "RESTARTS", "LAST EXIT", "CONSOLE LOG"], list.map { v in
            [v.name, v.state.rawValue, v.pid.map(String.init) ?? "-", v.accel.rawValue,
             v.uptime.map { String(format: "%.0fs", $0) } ?? "-", v.bootTime.map { String(format: "%.1fs", $0) } ?? "-",
             "\(v.restarts)", v.lastExit.map { "\($0)" } ?? "-", v.consoleLog]
        })
    }

    static func act(_ action: String, _ vm: String?, options: NameOption, json: Bool) throws {
        let instance = try resolveInstance(options)
        let list = try request(options, ControlRequest(command: "vm", action: action, vm: vm), as: [VMStatus].self, timeout: 180)
        // Every VM a daemon lists runs on its host.
        if json { return printJSON(JSONDocuments.vmList(list, host: InstanceIdentity(stem: instance)?.host)) }
        print(rows(list))
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every QEMU guest: state, pid, acceleration, uptime, boot time, restarts.")
        @OptionGroup var options: NameOption
        @Flag(help: "Print JSON (stable keys).") var json = false
        func run() throws { try VMCommand.act("list", nil, options: options, json: json) }
    }

    struct ConsoleCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "console", abstract: "Attach this terminal to the VM's serial console (Ctrl-] detaches).")
        @OptionGroup var options: NameOption
        @Argument(help: "The VM (guest name).") var vm: String
        func validate() throws { try check("VM", NameRules.problem(with: vm, as: .guest)) }
        func run() throws {
            let list = try request(options, ControlRequest(command: "vm", action: "list"), as: [VMStatus].self)
            guard let v = list.first(where: { $0.name == vm }) else {
                throw Failure(message: "no VM '\(vm)'" + (list.isEmpty ? "" : " (VMs: \(list.map(\.name).joined(separator: ", ")))"))
            }
            do { try Console.attach(socketPath: v.consoleSocket, name: vm) }
            catch { throw Failure(message: "cannot attach to \(vm)'s console (\(v.state.rawValue)): \(error); its log: \(v.consoleLog)") }
        }
    }

    /// What start, stop and restart take: the VM, `--name`, `--json`.
    struct Target: ParsableArguments {
        @OptionGroup var options: NameOption
        @Argument(help: "The VM (guest name).") var vm: String
        @Flag(help: "Print JSON (stable keys).") var json = false
        func validate() throws { try check("VM", NameRules.problem(with: vm, as: .guest)) }
        func act(_ action: String) throws { try VMCommand.act(action, vm, options: options, json: json) }
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Boot a stopped VM (returns once it is up).")
        @OptionGroup var target: Target
        func run() throws { try target.act("start") }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Power a VM down (ACPI, then quit, then kill); it is not restarted.")
        @OptionGroup var target: Target
        func run() throws { try target.act("stop") }
    }

    struct Migrate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Live-migrate a QEMU guest to another host of the fabric (VMotion; needs etcd).",
            discussion: """
            Run it against the host the VM runs on (--host H). The destination creates the VM's ports \
            (same port group, MAC and policies) and waits with QEMU -incoming; the source streams the \
            guest over the hosts' underlay addresses; etcd records the switch-over, after which the guest \
            resumes on the destination and announces itself (RARP, or its own gratuitous ARPs), which \
            moves its MAC on every host. A refusal (unknown host, no capacity, a netns guest, another \
            topology file) changes nothing; a failed migration leaves the VM running where it was.
            """)
        @OptionGroup var options: NameOption
        @Argument(help: "The VM (guest name).") var vm: String
        @Option(help: "The destination host.") var to: String
        @Flag(help: "Print JSON (stable keys).") var json = false
        func validate() throws {
            try check("VM", NameRules.problem(with: vm, as: .guest))
            try check("--to", NameRules.problem(with: to, as: .host))
        }
        func run() throws {
            // Bounded by the daemon: 60 s to prepare, 300 s of QEMU migration, plus the commit.
            let r = try request(options, ControlRequest(command: "vm", action: "migrate", vm: vm, to: to), as: MigrationReport.self, timeout: 900)
            if json { return printJSON(JSONDocuments.migration(r)) }
            let mib = r.transferredBytes.map { String(format: ", %.0f MiB sent", Double($0) / 1_048_576) } ?? ""
            print("\(r.guest): migrated from \(r.from) to \(r.to) in \(String(format: "%.2f", r.totalSeconds)) s "
                  + "(QEMU \(r.qemuTotalMilliseconds.map { "\($0) ms" } ?? "?"), downtime \(r.qemuDowntimeMilliseconds.map { "\($0) ms" } ?? "?")\(mib); "
                  + "switch-over recorded in etcd in \(String(format: "%.0f", r.commitMilliseconds)) ms; \(r.backend))")
        }
    }

    struct Restart: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop and start a VM; it comes back on the same ports with the same MACs.")
        @OptionGroup var target: Target
        func run() throws { try target.act("restart") }
    }
}
