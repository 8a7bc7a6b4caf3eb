import Foundation
import Testing
import TestSupport

/// What a new user runs first: the README's demo, and an installed `tapestry`.
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct FirstHourSystemTests {
    static func id() -> String { Capabilities.uniquePrefix("h") }

    /// The names Topologies/demo.yaml uses (it is the user's demo, so not prefixed by a test id).
    static let demoNamespaces: Set<String> = ["web1", "web2", "db1", "db2", "tap1"]

    @Test(.enabled(if: Harness.hasQEMU, "the demo topology has a QEMU guest: needs qemu-system-x86_64"),
          .enabled(if: demoNamespaces.isDisjoint(with: Harness.namespaces()) && !FileManager.default.fileExists(atPath: "/run/tapestry/demo.state"),
                   "the demo's own names (web1, …, topology 'demo') are in use on this machine"))
    func theDemoRunsNonInteractivelyWhileAnotherTopologyIsUp() throws {
        let p = Self.id()
        let other = RunningTopology(name: "\(p)other", yaml: "name: \(p)other\nswitches: {sw0: {port-groups: {g: {vlan: none}}}}\nguests:\n  \(p)o: {kind: netns, nics: [{switch: sw0, port-group: g}]}\n")
        defer { sh("rm -rf /var/log/tapestry/\(p)other") }
        try #require(other.up.succeeded, "\(other.up.stderr)")
        let start = Date()
        let demo = sh("cd '\(Harness.packageRoot)' && TAPESTRY_BIN='\(Harness.binary)' TAPESTRY_DEMO_NONINTERACTIVE=1 timeout 900 Scripts/demo.sh", timeout: 960)
        print("demo.sh (non-interactive): exit \(demo.status) after \(Int(Date().timeIntervalSince(start))) s")
        #expect(demo.status == 0, "demo.sh failed:\n\(demo.stdout.suffix(3000))\n\(demo.stderr.suffix(3000))")
        #expect(demo.stdout.contains("checks passed"), "\(demo.stdout.suffix(2000))")
        #expect(!demo.stderr.contains("several topologies are running"), "\(demo.stderr)")
        #expect(demo.stdout.contains("(blocked by the switch, as it should be)"))
        // The demo tore itself down and left the other topology alone.
        #expect(Self.demoNamespaces.isDisjoint(with: Harness.namespaces()), "the demo's guests are gone")
        #expect(other.daemonPID() != nil, "the other topology still runs")
        #expect(other.ping(from: "\(p)o", to: "127.0.0.1", count: 1))
        sh("rm -rf /var/log/tapestry/demo")
    }

    @Test(.enabled(if: Harness.hasQEMU, "the installed binary is checked on a QEMU guest: needs qemu-system-x86_64"))
    func anInstalledTapestryFindsItsOwnFiles() throws {
        let p = Self.id()
        let prefix = NSTemporaryDirectory() + "tapestry-\(p)prefix"
        defer { sh("rm -rf '\(prefix)'") }
        // Its own scratch path: `swift test` holds .build while the tests run.
        let install = sh("cd '\(Harness.packageRoot)' && Scripts/install.sh --no-setup --scratch-path .build/install-test --prefix '\(prefix)'", timeout: 1800)
        try #require(install.succeeded, "install.sh failed:\n\(install.stdout.suffix(2000))\n\(install.stderr.suffix(2000))")
        let bin = prefix + "/bin/tapestry"
        for f in ["bin/tapestry", "share/tapestry/guest-image.sh", "share/tapestry/guest/init", "share/tapestry/guest/imagetool.py",
                  "share/tapestry/BUILD", "share/bash-completion/completions/tapestry", "share/zsh/site-functions/_tapestry",
                  "share/man/man1/tapestry.1"] {
            #expect(FileManager.default.fileExists(atPath: "\(prefix)/\(f)"), "installed: \(f)")
        }
        let version = sh("cd / && '\(bin)' --version")
        #expect(version.succeeded && version.stdout.contains("commit"), "the installed binary knows its commit: \(version.stdout)")
        #expect(sh("bash -n '\(prefix)/share/bash-completion/completions/tapestry'").succeeded, "the bash completion parses")
        #expect(sh("man -l '\(prefix)/share/man/man1/tapestry.1' 2>/dev/null | head -20").stdout.contains("tapestry") || !sh("command -v man").succeeded)
        // Every command and option is in the man page and the completions.
        let manual = (try? String(contentsOfFile: "\(prefix)/share/man/man1/tapestry.1", encoding: .utf8)) ?? ""
        let bash = (try? String(contentsOfFile: "\(prefix)/share/bash-completion/completions/tapestry", encoding: .utf8)) ?? ""
        let zsh = (try? String(contentsOfFile: "\(prefix)/share/zsh/site-functions/_tapestry", encoding: .utf8)) ?? ""
        for word in ["neighbors", "graph", "extcap", "mdb", "--metrics"] {
            let roff = word.hasPrefix("--") ? "Fl " + word.dropFirst() : word   // mdoc writes --metrics as `Fl -metrics`
            #expect(manual.contains(roff) && bash.contains(word) && zsh.contains(word), "\(word) in the man page and both completions")
        }

        // From /, with no hint in the environment, a QEMU guest's `up` finds the image builder
        // in PREFIX/share/tapestry (not the checkout).
        let file = NSTemporaryDirectory() + "tapestry-\(p)inst.yaml"
        try """
        name: \(p)inst
        switches: {sw0: {port-groups: {g: {vlan: none}}}}
        guests:
          \(p)vm: {kind: qemu, memory: 256M, nics: [{switch: sw0, port-group: g, ip: 10.46.0.2/24}]}
        """.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file); sh("cd / && '\(bin)' down --name \(p)inst"); sh("rm -rf /var/log/tapestry/\(p)inst") }
        let up = sh("cd / && env -u TAPESTRY_GUEST_IMAGE_SCRIPT PATH=/usr/sbin:/usr/bin:/sbin:/bin '\(bin)' up '\(file)' --detach", timeout: 900)
        #expect(!up.stderr.contains("guest-image.sh") || up.succeeded, "the builder was found: \(up.stderr.suffix(1500))")
        #expect(up.succeeded, "up with a QEMU guest from an installed binary: \(up.stdout.suffix(1500)) \(up.stderr.suffix(1500))")
        let vms = ((try? JSONSerialization.jsonObject(with: Data(sh("cd / && '\(bin)' vm list --name \(p)inst --json").stdout.utf8))) as? [String: Any])?["vms"] as? [[String: Any]] ?? []
        #expect(vms.first?["state"] as? String == "running", "\(vms)")
        // The console log holds no raw terminal query (ESC [ 6 n) from the guest's shell.
        let consoleLog = vms.first?["console_log"] as? String ?? ""
        let down = sh("cd / && '\(bin)' down --name \(p)inst")
        #expect(down.succeeded, "\(down.stderr)")
        let text = (try? String(contentsOfFile: consoleLog, encoding: .isoLatin1)) ?? ""
        #expect(text.contains("TAPESTRY-GUEST-READY"), "console log read: \(consoleLog)")
        #expect(!text.contains("\u{1B}[6n"), "no ESC[6n in the console log")
    }
}
