import Foundation

/// Writes frames as a classic pcap file (https://www.tcpdump.org/manual/pcap-savefile.html:
/// magic 0xa1b2c3d4, version 2.4, microsecond timestamps, host byte order), for checking
/// our output with real tools (tshark, tcpdump).
/// - `linkType`: 1 (LINKTYPE_ETHERNET) or 101 (LINKTYPE_RAW: IP packets).
/// - `originalLengths`: per frame, the length on the wire when it was cut (nil: uncut).
public func writePcap(_ path: String, frames: [[UInt8]], linkType: UInt32 = 1, originalLengths: [Int]? = nil) throws {
    var out = [UInt8]()
    func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
    func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
    u32(0xa1b2_c3d4); u16(2); u16(4); u32(0); u32(0); u32(262_144); u32(linkType)
    for (i, f) in frames.enumerated() {
        u32(1_700_000_000 + UInt32(i)); u32(0)
        u32(UInt32(f.count)); u32(UInt32(originalLengths?[i] ?? f.count))
        out += f
    }
    try Data(out).write(to: URL(fileURLWithPath: path))
}

/// Whether tshark (Wireshark's command line) is installed (`Scripts/setup.sh` installs it).
public var hasTshark: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/tshark") }

/// Runs tshark over a pcap with the IPv4 header, TCP and UDP checksum checks on, and returns
/// one line per frame with the requested fields (`-T fields`, all occurrences joined by `,`,
/// fields separated by a space). A checksum status field reads 1 (good) or 0 (bad).
public func tsharkFields(_ path: String, _ fields: [String], extra: String = "") -> CommandResult {
    let f = fields.map { "-e \($0)" }.joined(separator: " ")
    return sh("tshark -n -r \(path) -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE -o ip.check_checksum:TRUE \(extra) "
              + "-T fields -E separator=/s -E occurrence=a \(f) 2>/dev/null", timeout: 60)
}
