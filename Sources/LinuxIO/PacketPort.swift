import CLinux
import Model
#if canImport(Glibc)
import Glibc
#endif

/// A switch port on an existing netdev through AF_PACKET: a physical NIC uplink (or the
/// host side of a TAP that QEMU holds).
///
/// Receives from a TPACKET_V3 ring (`PacketSocket`: no system call per frame, the stripped
/// 802.1Q tag put back). Sends through a second, send-only AF_PACKET socket; with
/// `txVNetHeader` that socket takes a virtio-net header (PACKET_VNET_HDR), so a guest's
/// 64 KiB TSO frame leaves whole and the kernel (or the NIC) cuts it into wire frames. Our
/// own transmissions never come back on the ring (PACKET_IGNORE_OUTGOING).
///
/// With `disableGRO`, GRO is turned off on the NIC while the port is open (and restored by
/// `close`): GRO would hand the ring 64 KiB super-frames that no guest could take.
public final class PacketPort: SingleQueuePortIO {
    public let name: String
    let rx: PacketSocket
    private var txFD: Int32
    public let txVNetHeaderSize: Int
    private var restoreGRO: Bool?

    /// - `mtu`: the switch MTU; ring slots hold MTU + Ethernet header + two tags.
    public init(interface: String, txVNetHeader: Bool, disableGRO: Bool, mtu: Int = 1500) throws {
        name = interface
        if disableGRO {
            let gro = cl_ethtool_get_gro(interface)
            if gro == 1, cl_ethtool_set_gro(interface, 0) == 0 { restoreGRO = true }
        }
        do {
            // TPACKET_V2: a wake-up per frame. V3 hands frames over per block (when full, or
            // after a ≥ 1 ms timer), which added up to 1 ms to every lone frame's latency.
            let slot = UInt32((mtu + 14 + 8 + 128 + 15) / 16 * 16)
            let frame = max(2048, slot)
            rx = try PacketSocket(interface: interface, configuration: .init(
                blockSize: max(128 * 1024, (frame + 4095) / 4096 * 4096), blockCount: 64, frameSize: frame, perFrameWakeups: true))
            txFD = try Syscall.require("open AF_PACKET sender", subject: "interface \(interface)") {
                clp_open_tx(interface, txVNetHeader ? 1 : 0)
            }
        } catch {
            if restoreGRO == true { _ = cl_ethtool_set_gro(interface, 1) }
            throw error
        }
        txVNetHeaderSize = txVNetHeader ? VNetHeader.size : 0
    }

    deinit { close() }

    public var pollFD: Int32 { rx.fd }
    public var vnetHeaderSize: Int { 0 }
    public var ifindex: Int32 { rx.ifindex }

    /// Whether the netdev this port is bound to still exists (`if_indextoname(3)`): an
    /// AF_PACKET socket whose device was deleted reports ENETDOWN once, like a link that
    /// merely went down.
    public var deviceExists: Bool {
        var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        return if_indextoname(UInt32(rx.ifindex), &name) != nil
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
        if restoreGRO == true { _ = cl_ethtool_set_gro(name, 1); restoreGRO = nil }
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
