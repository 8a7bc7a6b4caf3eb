import Foundation
import Testing
import TestSupport

/// End to end with the real `tapestry` binary: Wireshark's extcap (tshark lists and
/// captures `tapestry:NAME/PORT`) and `tapestry graph` of a running topology (Graphviz).
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct ObservabilitySystemTests {
    static func lab(_ p: String) -> String {
        """
        name: \(p)obs
        switches:
          sw0:
            port-groups:
              web: {vlan: 10}
        guests:
          \(p)a: {kind: netns, nics: [{switch: sw0, port-group: web, mac: "02:00:00:00:0a:01", ip: 10.21.0.1/24}]}
          \(p)b: {kind: netns, nics: [{switch: sw0, port-group: web, mac: "02:00:00:00:0a:02", ip: 10.21.0.2/24}]}
        """
    }

    /// A private HOME whose personal extcap directory holds the wrapper, so the test does not
    /// install anything machine-wide (Wireshark 4.0 searches $HOME/.config/wireshark/extcap).
    static func installExtcap(home: String) -> CommandResult {
        sh("HOME='\(home)' '\(Harness.packageRoot)/Scripts/install-extcap.sh' --user --binary '\(Harness.binary)'")
    }

    @Test(.enabled(if: Harness.hasTshark, "needs tshark (Debian package tshark)"))
    func tsharkListsAndCapturesTapestryPorts() throws {
        let p = Capabilities.uniquePrefix("x")
        let lab = RunningTopology(name: "\(p)obs", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let home = NSTemporaryDirectory() + "tapestry-\(p)-home"
        defer { try? FileManager.default.removeItem(atPath: home) }
        let install = Self.installExtcap(home: home)
        try #require(install.succeeded, "install-extcap: \(install.stderr)")
        #expect(FileManager.default.isExecutableFile(atPath: home + "/.config/wireshark/extcap/tapestry-extcap"))

        // The extcap protocol, as Wireshark speaks it.
        let ifaces = sh("'\(Harness.binary)' extcap --extcap-interfaces --extcap-version=4.0").stdout
        #expect(ifaces.hasPrefix("extcap {version=1.0}"))
        #expect(ifaces.contains("interface {value=tapestry:\(p)obs/\(p)a.eth0}"))
        #expect(sh("'\(Harness.binary)' extcap --extcap-interface tapestry:\(p)obs/\(p)a.eth0 --extcap-dlts").stdout.contains("dlt {number=1}{name=EN10MB}"))
        #expect(sh("'\(Harness.binary)' extcap --extcap-interface tapestry:\(p)obs/\(p)a.eth0 --extcap-config").stdout.contains("{call=--direction}"))

        // tshark finds the interfaces through the installed wrapper.
        let list = sh("HOME='\(home)' tshark -D 2>/dev/null", timeout: 60).stdout
        #expect(list.contains("tapestry:\(p)obs/\(p)a.eth0") && list.contains("tapestry:\(p)obs/\(p)b.eth0"), "tshark -D: \(list)")

        // And captures from one while the guests ping; tshark's capture filter reaches the
        // extcap as --extcap-capture-filter (libpcap BPF, as `capture --filter`).
        let out = NSTemporaryDirectory() + "tapestry-\(p)-extcap.pcapng"
        defer { unlink(out); unlink(out + ".log") }
        sh("(HOME='\(home)' timeout 30 tshark -i 'tapestry:\(p)obs/\(p)b.eth0' -f icmp -c 6 -w '\(out)' >'\(out).log' 2>&1 &)")
        usleep(1_500_000)   // tshark started the extcap and it registered its capture
        _ = lab.ping(from: "\(p)a", to: "10.21.0.2", count: 5)
        var frames: [String] = []
        for _ in 0..<40 {
            frames = sh("tshark -r '\(out)' -T fields -e frame.interface_name -e icmp.type 2>/dev/null").stdout
                .split(separator: "\n").map(String.init)
            if frames.count >= 6 { break }
            usleep(250_000)
        }
        #expect(frames.count >= 6, "tshark captured \(frames.count) frames: \((try? String(contentsOfFile: out + ".log", encoding: .utf8)) ?? "")")
        // Echo requests (8) leave by b.eth0, replies (0) come in: only ICMP passed the filter.
        #expect(frames.allSatisfy { $0 == "\(p)b.eth0\t8" || $0 == "\(p)b.eth0\t0" }, "\(frames)")
        #expect(frames.contains("\(p)b.eth0\t8") && frames.contains("\(p)b.eth0\t0"), "\(frames)")
        // Nothing is left running: the extcap ended with tshark.
        usleep(500_000)
        #expect(!sh("pgrep -f '[e]xtcap.*tapestry:\(p)obs'").succeeded)   // [e]: not this shell's own command line
    }

    @Test func graphOfARunningTopologyShowsItsPorts() throws {
        guard sh("command -v dot").succeeded else { try Test.cancel("skip: Graphviz dot not installed") }
        let p = Capabilities.uniquePrefix("g")
        let lab = RunningTopology(name: "\(p)obs", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let svg = Harness.tapestry("graph --name \(p)obs")
        #expect(svg.succeeded && svg.stdout.contains("<svg"), "\(svg.stderr)")
        #expect(svg.stdout.contains("guest:\(p)a") && svg.stdout.contains("group:sw0/web") && svg.stdout.contains("VLAN 10"))
        let dot = Harness.tapestry("graph '\(lab.file)' --format dot")
        #expect(dot.succeeded && dot.stdout.hasPrefix("digraph"))
        #expect(Harness.tapestry("graph '\(lab.file)' --format png").status == 2)
    }
}
