import Core
import Foundation
import Model
#if canImport(Glibc)
import Glibc  // types and constants (iovec, errno values, signals); calls go through LinuxIO
#endif

/// Where in the datapath a frame was seen (pktcap-uw's capture points).
public enum CapturePoint: UInt8, Sendable {
    /// As received, before VLAN processing.
    case ingress = 1
    /// As sent, after tagging.
    case egress = 2
}

/// What a capture session selects: ports of one or more switches of the datapath.
///
/// Ports are a flat bitmap over every switch's ports (`offsets[s] + port`), so one session
/// may cover ports of several switches (`capture --port web1.eth0,db1.eth0`) and the
/// per-frame check is two array reads.
public struct CaptureSelection: Sendable {
    /// Per switch index: where its ports start in `selected` (count: switches + 1).
    public var offsets: [Int]
    /// Per (switch, port): selected or not.
    public var selected: [Bool]
    public var vlan: VLANID?
    public var ingress: Bool
    public var egress: Bool
    /// Dropped frames only, each with its reason.
    public var drops: Bool

    /// - Parameters:
    ///   - ports: per switch (in datapath order), per port: selected or not.
    public init(ports: [[Bool]], vlan: VLANID?, ingress: Bool, egress: Bool, drops: Bool) {
        var offsets = [0]
        for p in ports { offsets.append(offsets.last! + p.count) }
        self.offsets = offsets
        self.selected = ports.flatMap { $0 }
        self.vlan = vlan; self.ingress = ingress; self.egress = egress; self.drops = drops
    }

    /// A selection of ports of one switch (index `switchIndex` of `switchCount`).
    public init(switchIndex: Int, ports: [Bool], vlan: VLANID?, ingress: Bool, egress: Bool, drops: Bool, switchCount: Int = 1) {
        var all = Array(repeating: [Bool](), count: max(switchCount, switchIndex + 1))
        all[switchIndex] = ports
        self.init(ports: all, vlan: vlan, ingress: ingress, egress: egress, drops: drops)
    }

    /// True when port `port` of switch `switchIndex` is selected.
    @inline(__always)
    public func contains(switchIndex: Int, port: Int) -> Bool {
        guard switchIndex + 1 < offsets.count else { return false }
        let i = offsets[switchIndex] + port
        return i < offsets[switchIndex + 1] && selected[i]
    }

    /// The switches this selection has ports on.
    public var switchIndices: [Int] {
        (0..<(offsets.count - 1)).filter { s in (offsets[s]..<offsets[s + 1]).contains { selected[$0] } }
    }

    /// True when a reload from `old` to `new` (switch names and port names, in datapath
    /// order) leaves every switch this selection covers where and as it was.
    public func survives(old: [(name: String, ports: [String])], new: [(name: String, ports: [String])]) -> Bool {
        for s in switchIndices {
            guard s < old.count, s < new.count, new[s].name == old[s].name, new[s].ports == old[s].ports else { return false }
        }
        return true
    }
}

/// One captured frame, as handed to the capture client.
public struct CapturedRecord: Equatable, Sendable {
    /// The switch (datapath index) and its port.
    public var switchIndex: Int
    public var port: Int
    public var point: CapturePoint
    public var timestampNanoseconds: UInt64
    public var originalLength: Int
    public var reason: DropReason?
    public var bytes: [UInt8]
}

/// A bounded ring of captured frames between the datapath (producer) and a capture client
/// (consumer).
///
/// The datapath never writes files and never blocks on a capture: it copies a selected frame
/// into the next free slot, or counts it as lost when the ring is full. The control thread
/// drains the ring while holding the datapath's batch lock, which is also what orders the two
/// sides; slots are preallocated, so the datapath allocates nothing here either.
public final class CaptureSession {
    public let selection: CaptureSelection
    public let slotCount: Int
    /// Bytes kept per frame (the snap length); longer frames are truncated.
    public let slotSize: Int
    private let storage: UnsafeMutablePointer<UInt8>
    private let meta: UnsafeMutablePointer<(switchIndex: Int32, port: Int32, point: UInt8, reason: UInt8, length: Int32, original: Int32, time: UInt64)>
    private var head = 0   // next slot to write (producer)
    private var tail = 0   // next slot to read (consumer)
    /// Frames the ring had no room for.
    public private(set) var lost: UInt64 = 0

    public init(selection: CaptureSelection, slotCount: Int = 1024, slotSize: Int = 9216 + 26) {
        self.selection = selection
        self.slotCount = slotCount
        self.slotSize = slotSize
        storage = .allocate(capacity: slotCount * slotSize)
        meta = .allocate(capacity: slotCount)
    }
    deinit { storage.deallocate(); meta.deallocate() }

    /// True when this session wants a frame seen at `point` on port `port` of switch
    /// `switchIndex`, in `vlan`.
    @inline(__always)
    func wants(switchIndex: Int, port: Int, point: CapturePoint, vlan: VLANID?, dropped: Bool) -> Bool {
        guard selection.contains(switchIndex: switchIndex, port: port) else { return false }
        if selection.drops { if !dropped { return false } }
        else {
            if point == .ingress && !selection.ingress { return false }
            if point == .egress && (!selection.egress || dropped) { return false }
        }
        // A frame dropped before VLAN classification has no VLAN: the filter does not apply.
        if let want = selection.vlan, let v = vlan, want != v { return false }
        return true
    }

    /// Copies a frame given as up to three segments (an egress iovec) into the next slot.
    @inline(__always)
    func record(switchIndex: Int = 0, port: Int, point: CapturePoint, reason: DropReason?, segments: UnsafePointer<iovec>, count: Int, now: UInt64) {
        guard head - tail < slotCount else { lost &+= 1; return }
        let slot = head % slotCount
        let dst = storage + slot * slotSize
        var copied = 0, original = 0
        for i in 0..<count {
            let seg = segments[i]
            original += seg.iov_len
            let n = min(seg.iov_len, slotSize - copied)
            if n > 0 { (dst + copied).update(from: seg.iov_base.assumingMemoryBound(to: UInt8.self), count: n); copied += n }
        }
        meta[slot] = (Int32(switchIndex), Int32(port), point.rawValue, reason?.rawValue ?? 255, Int32(copied), Int32(original), now)
        head += 1
    }

    /// Takes every frame captured so far. Call with the datapath lock held.
    public func drain() -> [CapturedRecord] {
        var out: [CapturedRecord] = []
        while tail < head {
            let slot = tail % slotCount
            let m = meta[slot]
            out.append(CapturedRecord(switchIndex: Int(m.switchIndex), port: Int(m.port), point: CapturePoint(rawValue: m.point) ?? .ingress,
                                      timestampNanoseconds: m.time, originalLength: Int(m.original),
                                      reason: m.reason == 255 ? nil : DropReason(rawValue: m.reason),
                                      bytes: Array(UnsafeBufferPointer(start: storage + slot * slotSize, count: Int(m.length)))))
            tail += 1
        }
        return out
    }
}

