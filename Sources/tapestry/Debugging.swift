import ArgumentParser
import Capture
import Foundation
import LinuxIO
import Runtime
import Topology
#if canImport(Glibc)
import Glibc
#endif

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dry-run the forwarding decision for a frame and explain each step (changes nothing).",
        discussion: """
        Frame description keys: src, dst (MACs), vlan (N or N/M for two tags), stag (802.1ad),         type (arp, rarp, ipv4, ipv6, 0xNNNN), len (the frame's length in bytes from the destination         MAC to the end of the payload, without the tags that vlan/stag add and without the FCS;         14..65535, default 60, the minimum Ethernet frame without FCS). The switch is found from         the port; --switch is needed only if the port name is on several switches.
        """)
    @OptionGroup var options: NameOption
    @OptionGroup var sw: SwitchOption
    @Option(name: .customLong("in"), help: "Ingress port, e.g. web1.eth0.") var inPort: String
    @Option(help: "A frame: 'src=MAC,dst=MAC[,vlan=N][,type=arp|ipv4|0xNNNN]'.") var frame: String?
    @Option(help: "Replay the frames of a pcap or pcapng file.") var pcap: String?
    @Flag(help: "Print JSON (stable keys).") var json = false

    func validate() throws {
        if (frame == nil) == (pcap == nil) { throw ValidationError("give exactly one of --frame or --pcap") }
        try check("--in", NameRules.portNameProblem(inPort))
        if let p = pcap { try check("--pcap", inputFileProblem(p)) }
    }

    func run() throws {
        var frames: [[UInt8]]
        do {
            if let f = frame { frames = [try FrameDescription.bytes(from: f)] }
            else { frames = try CaptureFile.read(path: pcap!).map(\.bytes) }
        } catch let e as CaptureError { throw Failure(message: e.message) } catch let e as RuntimeError { throw Failure(message: e.description) }
        if frames.isEmpty { throw Failure(message: "\(pcap ?? "input") holds no frames") }
        let req = ControlRequest(command: "trace", switch: sw.switchName, port: inPort, frames: frames.map(\.hexString))
        let report = try request(options, req, as: TraceReport.self)
        if json { return printJSON(JSONDocuments.trace(report)) }
        for (i, f) in report.frames.enumerated() {
            print("frame \(i + 1): \(f.summary)")
            Trace.printSteps(f, indent: "  ")
        }
    }

    /// Prints a frame's steps and verdict, then each link crossing's trace in the other
    /// switch, indented one level deeper per link.
    static func printSteps(_ f: TraceReport.FrameTrace, indent: String) {
        for s in f.steps { print("\(indent)\(s.stage.padding(toLength: 8, withPad: " ", startingAt: 0)) \(s.detail)") }
        switch f.verdict {
        case "drop": print("\(indent)verdict  drop (\(f.dropReason ?? "?"))")
        default: print("\(indent)verdict  \(f.verdict): " + f.egress.map { "\($0.port) \($0.tag)" }.joined(separator: ", "))
        }
        for c in f.crossings ?? [] {
            print("\(indent)switch \(c.switch), in \(c.inPort) (across \(c.via)):" + (c.truncated ? " not followed (too many links deep)" : ""))
            if let t = c.trace {
                print("\(indent)    \(t.summary)")
                printSteps(t, indent: indent + "    ")
            }
        }
    }
}

/// Set by SIGINT/SIGTERM during a capture: finish the file cleanly.
nonisolated(unsafe) var captureInterrupted: sig_atomic_t = 0

struct CaptureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Capture what the switch sees at a port (pcapng: one interface per port, direction flags, drop reasons as comments).",
        discussion: "Ports may belong to several switches; without --port, --port-group or --uplink every port (of --switch, or of every switch) is captured.")
    @OptionGroup var options: NameOption
    @OptionGroup var sw: SwitchOption
    @Option(help: "Ports to capture (comma-separated), e.g. web1.eth0,db1.eth0.") var port: String?
    @Option(help: "Every port of this port group.") var portGroup: String?
    @Option(help: "An uplink (NIC name).") var uplink: String?
    @Option(help: "Only frames of this VLAN (1..4094 or none).") var vlan: String?
    @Option(help: "in (as received), out (as sent) or both.") var direction: String = "both"
    @Flag(help: "Capture dropped frames, each with its drop reason as the packet comment.") var drops = false
    @Option(help: "A BPF filter expression (tcpdump syntax).") var filter: String?
    @Option(name: .customShort("c"), help: "Stop after this many frames.") var count: Int?
    @Option(help: "Stop after this long (e.g. 10s, 2m).") var duration: String?
    @Option(name: .customShort("w"), help: "Output pcapng file, or - for standard output.") var write: String

    func validate() throws {
        if [port, portGroup, uplink].compactMap({ $0 }).count > 1 { throw ValidationError("give at most one of --port, --port-group, --uplink") }
        if !["in", "out", "both"].contains(direction) { throw ValidationError("--direction must be in, out or both") }
        if let c = count, c <= 0 { throw ValidationError("-c must be positive") }
        if let d = duration, parseSeconds(d) == nil { throw ValidationError("bad --duration '\(d)' (e.g. 10s, 2m, 1h)") }
        if let p = port {
            let names = p.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            for n in names { try check("--port", NameRules.portNameProblem(n)) }
        }
        if let g = portGroup { try check("--port-group", NameRules.problem(with: g, as: .portGroup)) }
        if let u = uplink { try check("--uplink", NameRules.interfaceNameProblem(u)) }
        if let v = vlan { try check("--vlan", vlanProblem(v)) }
        if write != "-" {
            if write.isEmpty || write.utf8.contains(0) { throw ValidationError("-w: expected a file name or -") }
            var st = stat()
            // A FIFO is what Wireshark's extcap hands over (`tapestry extcap --fifo`).
            if stat(write, &st) == 0, (st.st_mode & S_IFMT) != S_IFREG, (st.st_mode & S_IFMT) != S_IFIFO {
                throw ValidationError("-w: '\(write)' exists and is neither a regular file nor a FIFO")
            }
        }
    }

    func run() throws {
        // The filter is compiled before anything starts: a bad expression is the only output.
        var bpf: BPFFilter?
        if let f = filter {
            do { bpf = try BPFFilter(f) } catch let e as CaptureError { throw Failure(message: e.message) }
        }
        let instance = try resolveInstance(options)
        let connection: UnixConnection
        do { connection = try openControlStream(name: instance, ControlRequest(command: "capture", switch: sw.switchName, vlan: vlan, port: port ?? uplink,
                                                                               portGroup: portGroup, direction: direction, drops: drops)) }
        catch let e as RuntimeError { throw Failure(message: e.description) }
        defer { connection.close() }
        var reader = StreamReader(fd: connection.fd)
        guard let line = reader.readLine() else { throw Failure(message: "the switch closed the capture stream") }
        if let err = try? JSON.decoder().decode(ControlError.self, from: Data(line)) { throw Failure(message: err.error) }
        let header = try JSON.decoder().decode(CaptureHeader.self, from: Data(line))

        let writer: PcapngStreamWriter
        do { writer = write == "-" ? try PcapngStreamWriter(fd: 1) : try PcapngStreamWriter(path: write) }
        catch { throw Failure(message: "cannot write \(write): \(error)") }
        defer { writer.close() }
        for i in header.interfaces { _ = try writer.addInterface(PcapngInterface(name: i.name, description: i.description)) }

        signal(SIGPIPE, SIG_IGN)
        signal(SIGINT) { _ in captureInterrupted = 1 }
        signal(SIGTERM) { _ in captureInterrupted = 1 }
        let deadline = duration.flatMap(parseSeconds).map { Date().addingTimeInterval($0) }
        var written = 0, lost: UInt64 = 0
        loop: while captureInterrupted == 0 {
            if let d = deadline, Date() >= d { break }
            if let c = count, written >= c { break }
            guard let head = reader.read(32, waitMilliseconds: 100) else {
                if reader.closed { break } else { continue }
            }
            let capLen = Int(head.le32(0)), iface = head.le32(4), ts = head.le64(8), orig = Int(head.le32(16))
            let point = head[20], reason = head[21]
            lost = head.le64(24)
            var frame: [UInt8] = []
            while frame.count < capLen {
                guard let more = reader.read(capLen - frame.count, waitMilliseconds: 1000) else { if reader.closed { break loop } else { continue } }
                frame += more
            }
            if let f = bpf, !frame.withUnsafeBytes({ f.matches($0, wireLength: orig) }) { continue }
            let comment = reason == 255 ? nil : dropComment(rawReason: reason, frame: frame)
            do {
                try writer.write(interface: iface, timestampNanoseconds: ts, frame: frame, originalLength: orig,
                                 direction: point == 2 ? .outbound : .inbound, comment: comment)
            } catch { break }
            written += 1
        }
        FileHandle.standardError.write(Data("tapestry: \(written) frame(s) captured\(lost > 0 ? ", \(lost) lost (capture ring full)" : "")\n".utf8))
    }
}

/// Seconds from `10s`, `2m`, `1h` or a plain number.
func parseSeconds(_ text: String) -> TimeInterval? {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
    if let u = text.last, let m = units[u], let v = Double(text.dropLast()), v > 0 { return v * m }
    if let v = Double(text), v > 0 { return v }
    return nil
}

/// Reads a control stream: a JSON line, then fixed-size records.
struct StreamReader {
    let fd: Int32
    var buffer: [UInt8] = []
    var closed = false

    mutating func fill(waitMilliseconds: Int32) {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, waitMilliseconds) > 0 else { return }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { closed = true } else { buffer += chunk[0..<n] }
    }

    mutating func readLine() -> [UInt8]? {
        let deadline = Date().addingTimeInterval(10)
        while !closed && Date() < deadline {
            if let i = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<i]); buffer.removeFirst(i + 1); return line
            }
            fill(waitMilliseconds: 100)
        }
        return nil
    }

    /// Up to `n` bytes (exactly `n` for record headers of 32 bytes once available).
    mutating func read(_ n: Int, waitMilliseconds: Int32) -> [UInt8]? {
        if buffer.count < n && !closed { fill(waitMilliseconds: waitMilliseconds) }
        if n == 32 && buffer.count < 32 { return nil }
        guard !buffer.isEmpty else { return nil }
        let k = min(n, buffer.count)
        let out = Array(buffer[..<k]); buffer.removeFirst(k)
        return out
    }
}

extension Array where Element == UInt8 {
    func le32(_ o: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(self[o + $1]) << (8 * UInt32($1)) } }
    func le64(_ o: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(self[o + $1]) << (8 * UInt64($1)) } }
}
