import Core
import Foundation
import Model
#if canImport(Glibc)
import Glibc
#endif

/// Where in the datapath a frame was seen (pktcap-uw's capture points).
public enum CapturePoint: UInt8, Sendable {
    /// As received, before VLAN processing.
    case ingress = 1
    /// As sent, after tagging.
    case egress = 2
}

/// What a capture session selects.
public struct CaptureSelection: Sendable {
    public var switchIndex: Int
    /// Per port of the switch: selected or not.
    public var ports: [Bool]
    public var vlan: VLANID?
    public var ingress: Bool
    public var egress: Bool
    /// Dropped frames only, each with its reason.
    public var drops: Bool
    public init(switchIndex: Int, ports: [Bool], vlan: VLANID?, ingress: Bool, egress: Bool, drops: Bool) {
        self.switchIndex = switchIndex; self.ports = ports; self.vlan = vlan
        self.ingress = ingress; self.egress = egress; self.drops = drops
    }
}

/// One captured frame, as handed to the capture client.
public struct CapturedRecord: Equatable, Sendable {
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
    private let meta: UnsafeMutablePointer<(port: Int32, point: UInt8, reason: UInt8, length: Int32, original: Int32, time: UInt64)>
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

    /// True when this session wants a frame seen at `point` on `port` in `vlan`.
    @inline(__always)
    func wants(port: Int, point: CapturePoint, vlan: VLANID?, dropped: Bool) -> Bool {
        guard selection.ports[port] else { return false }
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
    func record(port: Int, point: CapturePoint, reason: DropReason?, segments: UnsafePointer<iovec>, count: Int, now: UInt64) {
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
        meta[slot] = (Int32(port), point.rawValue, reason?.rawValue ?? 255, Int32(copied), Int32(original), now)
        head += 1
    }

    /// Takes every frame captured so far. Call with the datapath lock held.
    public func drain() -> [CapturedRecord] {
        var out: [CapturedRecord] = []
        while tail < head {
            let slot = tail % slotCount
            let m = meta[slot]
            out.append(CapturedRecord(port: Int(m.port), point: CapturePoint(rawValue: m.point) ?? .ingress,
                                      timestampNanoseconds: m.time, originalLength: Int(m.original),
                                      reason: m.reason == 255 ? nil : DropReason(rawValue: m.reason),
                                      bytes: Array(UnsafeBufferPointer(start: storage + slot * slotSize, count: Int(m.length)))))
            tail += 1
        }
        return out
    }
}

