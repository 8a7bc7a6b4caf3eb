import Foundation
import Testing
@testable import Capture

/// Inputs found by `Scripts/fuzz.sh` (target `pcap`) that made `CaptureFile.read` trap.
/// Each runs in an exit test so a regression fails this test instead of killing the run.
@Suite struct CaptureFuzzRegressionTests {
    /// A classic little-endian microsecond pcap with one 60-byte broadcast ARP record whose
    /// timestamp is (`seconds`, `fraction`) as signed 32-bit fields, as libpcap reads them.
    static func classicPcap(seconds: Int32, fraction: Int32) -> [UInt8] {
        func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        let frame: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0x0a, 0x01, 0x08, 0x06]
            + [UInt8](repeating: 0, count: 46)
        return le32(0xa1b2_c3d4) + [2, 0, 4, 0] + le32(0) + le32(0) + le32(65535) + le32(1)
            + le32(UInt32(bitPattern: seconds)) + le32(UInt32(bitPattern: fraction))
            + le32(UInt32(frame.count)) + le32(UInt32(frame.count)) + frame
    }

    static func readSurvives(_ bytes: [UInt8]) {
        let path = NSTemporaryDirectory() + "tapestry-fuzz-regression-\(getpid()).pcap"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        defer { unlink(path) }
        _ = try? CaptureFile.read(path: path)
    }

    /// fuzz crash-cea6c9f9…: ts_sec 0xb2c3d404 (negative as libpcap's signed 32-bit field)
    /// trapped in `UInt64(h.ts.tv_sec)` (CaptureFile.swift, timestampNanoseconds).
    @Test func negativeSecondsDoNotTrap() async {
        await #expect(processExitsWith: .success) {
            CaptureFuzzRegressionTests.readSurvives(CaptureFuzzRegressionTests.classicPcap(seconds: -1, fraction: 0))
        }
    }

    /// Same line, other operand: a negative ts_usec traps in `UInt64(h.ts.tv_usec)`.
    @Test func negativeFractionDoesNotTrap() async {
        await #expect(processExitsWith: .success) {
            CaptureFuzzRegressionTests.readSurvives(CaptureFuzzRegressionTests.classicPcap(seconds: 0, fraction: -1))
        }
    }
}
