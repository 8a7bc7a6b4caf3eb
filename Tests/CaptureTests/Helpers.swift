import Foundation
import TestSupport

/// Whether tshark and capinfos are installed (Debian package tshark; Scripts/setup.sh).
let hasTshark = sh("command -v tshark && command -v capinfos").succeeded
/// Whether tcpdump is installed.
let hasTcpdump = sh("command -v tcpdump").succeeded

/// A fresh path in the temporary directory; the caller removes it.
func temporaryPath(_ suffix: String) -> String {
    NSTemporaryDirectory() + "tapestry-capture-\(getpid())-\(UInt32.random(in: 0...UInt32.max))\(suffix)"
}

/// One pcapng block as the tests see it, parsed independently of the encoder.
struct ParsedBlock {
    var type: UInt32
    var totalLength: Int
    var trailingLength: Int
    var body: [UInt8]
}

/// A little-endian integer at `offset`.
func le<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, as: T.Type = T.self) -> T {
    var v: T = 0
    for i in (0..<MemoryLayout<T>.size).reversed() { v = v << 8 | T(bytes[offset + i]) }
    return v
}

/// Splits a pcapng byte stream into blocks; nil if a length runs past the end.
func parseBlocks(_ bytes: [UInt8]) -> [ParsedBlock]? {
    var blocks: [ParsedBlock] = []
    var at = 0
    while at < bytes.count {
        guard at + 12 <= bytes.count else { return nil }
        let total = Int(le(bytes, at + 4, as: UInt32.self))
        guard total >= 12, at + total <= bytes.count else { return nil }
        blocks.append(ParsedBlock(
            type: le(bytes, at), totalLength: total,
            trailingLength: Int(le(bytes, at + total - 4, as: UInt32.self)),
            body: Array(bytes[(at + 8)..<(at + total - 4)])))
        at += total
    }
    return blocks
}

/// One option: code, declared length, value, and how many padding bytes followed it.
struct ParsedOption: Equatable {
    var code: UInt16
    var value: [UInt8]
    var padding: [UInt8]
}

/// Parses the option list starting at `offset` of a block body, up to and including
/// opt_endofopt (returned as the last element).
func parseOptions(_ body: [UInt8], from offset: Int) -> [ParsedOption] {
    var out: [ParsedOption] = []
    var at = offset
    while at + 4 <= body.count {
        let code: UInt16 = le(body, at), length = Int(le(body, at + 2, as: UInt16.self))
        let padded = (length + 3) / 4 * 4
        out.append(ParsedOption(code: code, value: Array(body[(at + 4)..<(at + 4 + length)]),
                                padding: Array(body[(at + 4 + length)..<(at + 4 + padded)])))
        at += 4 + padded
        if code == 0 { break }
    }
    return out
}
