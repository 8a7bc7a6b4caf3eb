import CLinux
import Model
#if canImport(Glibc)
import Glibc
#endif

/// A switch port on an existing netdev through AF_PACKET: a physical NIC uplink (or the
/// host side of a TAP that QEMU holds).
///
/// Receives from a TPACKET_V2 ring (`PacketSocket`: no system call per frame, the stripped
/// 802.1Q tag put back) with a 12-byte virtio-net header before each frame
/// (PACKET_VNET_HDR_SZ): frames the kernel hands over with a partial checksum
/// (TP_STATUS_CSUMNOTREADY: veth, macvlan and tap peers leave checksums to the receiver) or
/// as GRO super-frames arrive described, not broken, and super-frames longer than a ring
/// slot come whole through the socket queue (`copyOversizeFrames`). Sends through a second,
/// send-only AF_PACKET socket that takes the same header, so a guest's 64 KiB TSO frame or
/// partial checksum leaves whole and the kernel (or the NIC) finishes it for the device's
/// features. Our own transmissions never come back on the ring (PACKET_IGNORE_OUTGOING).
/// The NIC's GRO stays on.
public final class PacketPort: SingleQueuePortIO {
    public let name: String
    let rx: PacketSocket
    private var txFD: Int32
    public let txVNetHeaderSize: Int

    /// - `vnetHeaders`: 12-byte virtio-net headers on receive and send (the switch's ports);
    ///   false for plain frames both ways (tests of the plain path).
    /// - `mtu`: the switch MTU; ring slots hold MTU + Ethernet header + two tags + header.
    public init(interface: String, vnetHeaders: Bool = true, mtu: Int = 1500) throws {
        name = interface
        // TPACKET_V2: a wake-up per frame. V3 hands frames over per block (when full, or
        // after a ≥ 1 ms timer), which added up to 1 ms to every lone frame's latency.
        let slot = UInt32((mtu + 14 + 8 + 128 + 12 + 15) / 16 * 16)
        let frame = max(2048, slot)
        let header = vnetHeaders ? 12 : 0
        rx = try PacketSocket(interface: interface, configuration: .init(
            blockSize: max(128 * 1024, (frame + 4095) / 4096 * 4096), blockCount: 64, frameSize: frame, perFrameWakeups: true,
            vnetHeaderSize: header, copyOversizeFrames: vnetHeaders))
        do {
            txFD = try Syscall.require("open AF_PACKET sender", subject: "interface \(interface)") {
                clp_open_tx(interface, Int32(header))
            }
        } catch {
            rx.close()
            throw error
        }
        txVNetHeaderSize = header
    }

    deinit { close() }

    public var pollFD: Int32 { rx.fd }
    public var vnetHeaderSize: Int { rx.vnetHeaderSize }
    public var ifindex: Int32 { rx.ifindex }

    /// Whether the netdev this port is bound to still exists: an AF_PACKET socket whose
    /// device was deleted reports ENETDOWN once, like a link that merely went down. Asked in
    /// the socket's own network namespace (`clp_device_exists`, SIOCGIFNAME on the socket),
    /// so a port opened inside another namespace (a VM TAP of a host with `netns:`) answers
    /// right from any thread. An error other than "no such device" counts as existing.
    public var deviceExists: Bool {
        clp_device_exists(rx.fd, rx.ifindex) != 0
    }

    @inline(__always)
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult { rx.read(into: buffer) }

    @inline(__always)
    public func writev(_ iov: UnsafePointer<iovec>, count: Int32) -> IOResult {
        let fd = txFD
        guard fd >= 0 else { return .failed(EBADF) }
        return Syscall.io { clp_sendv(fd, iov, count) }
    }

    /// Sends one plain frame built by the control path (beacon, RARP).
    @discardableResult
    public func send(_ frame: [UInt8]) -> IOResult {
        var header = [UInt8](repeating: 0, count: txVNetHeaderSize)
        var bytes = frame
        return header.withUnsafeMutableBytes { h in
            bytes.withUnsafeMutableBytes { f in
                var iov = [iovec(iov_base: h.baseAddress, iov_len: h.count), iovec(iov_base: f.baseAddress, iov_len: f.count)]
                return iov.withUnsafeMutableBufferPointer { p in
                    txVNetHeaderSize > 0 ? writev(p.baseAddress!, count: 2) : writev(p.baseAddress! + 1, count: 1)
                }
            }
        }
    }

    public func takePendingError() -> Int32 {
        let fd = rx.fd
        guard fd >= 0 else { return 0 }
        let e = clp_take_error(fd)
        return e < 0 ? 0 : e
    }

    /// Frames the ring cut short (longer than its frame size).
    public var truncatedFrames: UInt64 { rx.truncatedFrames }

    public func close() {
        rx.close()
        if txFD >= 0 { Glibc.close(txFD); txFD = -1 }
    }
}

/// Generic receive offload on a NIC (`ETHTOOL_GGRO` / `ETHTOOL_SGRO`).
public enum GenericReceiveOffload {
    /// Whether GRO is on for `interface`; nil when ethtool cannot tell.
    public static func isEnabled(_ interface: String) -> Bool? {
        switch cl_ethtool_get_gro(interface) { case 1: return true; case 0: return false; default: return nil }
    }
    /// Turns GRO on or off; true on success.
    @discardableResult
    public static func set(_ interface: String, enabled: Bool) -> Bool { cl_ethtool_set_gro(interface, enabled ? 1 : 0) == 0 }
}
