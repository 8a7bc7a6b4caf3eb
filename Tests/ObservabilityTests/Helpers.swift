import Foundation
import Glibc
import Model
import TestSupport

/// Builds IP frames as bytes (Ethernet + optional 802.1Q tag + IPv4/IPv6 + L4 header).
enum Packets {
    static func ipv4(_ text: String) -> UInt32 {
        text.split(separator: ".").reduce(UInt32(0)) { $0 << 8 | UInt32($1)! }
    }

    static func ethernet(dst: MACAddress, src: MACAddress, vlan: UInt16?, type: UInt16) -> [UInt8] {
        var out = dst.octets + src.octets
        if let v = vlan { out += [0x81, 0x00, UInt8(v >> 8), UInt8(v & 0xFF)] }
        out += [UInt8(type >> 8), UInt8(type & 0xFF)]
        return out
    }

    /// An IPv4 packet with a valid header checksum and `l4` after it.
    static func ipv4Frame(dst: MACAddress, src: MACAddress, vlan: UInt16? = nil, from: String, to: String,
                          proto: UInt8, l4: [UInt8], fragmentOffset: UInt16 = 0) -> [UInt8] {
        let total = 20 + l4.count
        var ip: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0x12, 0x34,
                           UInt8(fragmentOffset >> 8), UInt8(fragmentOffset & 0xFF), 64, proto, 0, 0]
        for a in [ipv4(from), ipv4(to)] { ip += [UInt8(a >> 24), UInt8((a >> 16) & 0xFF), UInt8((a >> 8) & 0xFF), UInt8(a & 0xFF)] }
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[i]) << 8 | UInt32(ip[i + 1]) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        let c = ~UInt16(sum)
        ip[10] = UInt8(c >> 8); ip[11] = UInt8(c & 0xFF)
        return ethernet(dst: dst, src: src, vlan: vlan, type: EtherType.ipv4) + ip + l4
    }

    /// ICMP echo request (type 8) or reply (type 0) with 56 bytes of data, as ping sends.
    static func icmpEcho(request: Bool, id: UInt16, sequence: UInt16) -> [UInt8] {
        var m: [UInt8] = [request ? 8 : 0, 0, 0, 0, UInt8(id >> 8), UInt8(id & 0xFF), UInt8(sequence >> 8), UInt8(sequence & 0xFF)]
        m += (0..<56).map { UInt8($0) }
        var sum: UInt32 = 0
        for i in stride(from: 0, to: m.count, by: 2) { sum += UInt32(m[i]) << 8 | UInt32(m[i + 1]) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        let c = ~UInt16(sum)
        m[2] = UInt8(c >> 8); m[3] = UInt8(c & 0xFF)
        return m
    }

    static func udp(sport: UInt16, dport: UInt16, payload: Int = 8) -> [UInt8] {
        let len = 8 + payload
        return [UInt8(sport >> 8), UInt8(sport & 0xFF), UInt8(dport >> 8), UInt8(dport & 0xFF),
                UInt8(len >> 8), UInt8(len & 0xFF), 0, 0] + [UInt8](repeating: 0xAB, count: payload)
    }

    /// An IPv6 packet; `extensions` are (next header, 8-byte body) pairs inserted first.
    static func ipv6Frame(dst: MACAddress, src: MACAddress, from: [UInt8], to: [UInt8], proto: UInt8, l4: [UInt8],
                          hopByHop: Bool = false) -> [UInt8] {
        var body = l4
        var next = proto
        if hopByHop { body = [proto, 0, 1, 4, 0, 0, 0, 0] + body; next = 0 }
        var ip: [UInt8] = [0x60, 0, 0, 0, UInt8(body.count >> 8), UInt8(body.count & 0xFF), next, 64]
        ip += from + to
        return ethernet(dst: dst, src: src, vlan: nil, type: EtherType.ipv6) + ip + body
    }
}

/// A free UDP (or TCP) port on 127.0.0.1, found by binding port 0 (a tiny race, acceptable in tests).
func freePort(udp: Bool = true) -> UInt16 {
    let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return UInt16(bigEndian: a.sin_port)
}

/// A new private directory under /tmp, removed by `cleanup`.
func temporaryDirectory(_ tag: String) -> String {
    let path = NSTemporaryDirectory() + "tapestry-obs-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A process started in the background by a shell line that writes its pid to a file; the
/// test kills exactly that pid.
final class BackgroundProcess {
    let pid: Int32
    let log: String

    /// Runs `command` (exec'ed by the shell, so `$!` is the program itself) with output to `log`.
    init?(_ command: String, log: String) {
        self.log = log
        let pidFile = log + ".pid"
        sh("(exec \(command) >'\(log)' 2>&1) & echo $! >'\(pidFile)'")
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let p = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        unlink(pidFile)
        pid = p
    }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// Waits until `log` contains `text` (at most `seconds`).
    @discardableResult
    func waitForOutput(_ text: String, seconds: Double = 5) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if output.contains(text) { return true }
            usleep(20_000)
        }
        return false
    }

    /// Sends `signal` and waits (at most 5 s) for the process to go, then SIGKILL.
    func stop(_ signal: Int32 = SIGTERM) {
        kill(pid, signal)
        for _ in 0..<250 where processAlive(pid) { usleep(20_000) }
        if processAlive(pid) { kill(pid, SIGKILL); usleep(50_000) }
    }

    deinit { if processAlive(pid) { stop() } }
}

/// True while `pid` exists and is not a zombie.
func processAlive(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}

func commandExists(_ name: String) -> Bool { sh("command -v \(name)").succeeded }
