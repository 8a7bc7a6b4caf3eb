#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinux

/// The character-device end of a Linux TAP interface: one fd that reads and writes whole
/// Ethernet frames of the netdev with the same name.
///
/// The switch owns the fd; the netdev may be moved into a guest's namespace (as `eth0`)
/// and keeps working — see DESIGN.md "Attaching guests". The device is non-persistent: the
/// netdev disappears when the fd closes. The fd is non-blocking, so reads and writes return
/// `.wouldBlock` instead of sleeping; wait for readability with `Epoll`.
///
/// Not thread-safe for `close()` racing with I/O: one owner (a datapath thread) at a time.
public final class TAPDevice {
    /// The open /dev/net/tun fd, or -1 after `close()`.
    public private(set) var fd: Int32
    /// The netdev's name as the kernel assigned it.
    public let name: String
    /// Whether each frame is preceded by a `virtio_net_hdr` (`IFF_VNET_HDR`).
    public let vnetHeader: Bool

    /// Bytes of `virtio_net_hdr` before each frame when `vnetHeader` is on (10).
    public static let vnetHeaderSize = Int(cl_vnet_hdr_size())

    /// Creates (or attaches to) the TAP netdev `name`.
    ///
    /// Wraps `cl_tap_open`: open("/dev/net/tun", O_RDWR|O_NONBLOCK|O_CLOEXEC) and
    /// ioctl(TUNSETIFF, IFF_TAP|IFF_NO_PI[|IFF_VNET_HDR]). Needs CAP_NET_ADMIN.
    /// - Parameter name: at most 15 bytes; empty lets the kernel pick `tapN`.
    /// - Throws: `SystemError`: EPERM without CAP_NET_ADMIN, ENAMETOOLONG, EBUSY if another
    ///   fd holds that TAP, EINVAL if a non-TAP link has that name.
    public init(name: String, vnetHeader: Bool = false) throws {
        var kernelName = [CChar](repeating: 0, count: 16)
        let fd = try Syscall.require("open /dev/net/tun", subject: "tap \(name)") {
            cl_tap_open(name, vnetHeader ? 1 : 0, &kernelName)
        }
        self.fd = fd
        self.name = kernelName.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        self.vnetHeader = vnetHeader
    }

    deinit { close() }

    /// Turns on checksum offload and TSO for the TAP (wraps `cl_tap_set_offload`, ioctl
    /// TUNSETOFFLOAD). Needs `vnetHeader`. The guest-side netdev then sends 64 KiB GSO
    /// frames with partial checksums, each described by the vnet header before the frame.
    public func enableOffloads() throws {
        _ = try Syscall.require("ioctl TUNSETOFFLOAD", subject: "tap \(name)") { cl_tap_set_offload(fd, 1) }
    }

    /// Reads one frame into `buffer` (wraps read(2)). Returns `.bytes(n)` with the frame
    /// length, `.wouldBlock` when no frame is queued, or `.failed(errno)`; a frame longer
    /// than the buffer is truncated by the kernel. `.failed(EBADF)` after `close()`.
    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        let fd = self.fd
        guard fd >= 0 else { return .failed(EBADF) }
        return Syscall.io { cl_read(fd, buffer.baseAddress, UInt(buffer.count)) }
    }

    /// Writes one whole frame (wraps write(2)); the kernel delivers it as received on the
    /// netdev. `.wouldBlock` is rare (TAP writes do not queue). Failures: EIO while the
    /// netdev is down, EINVAL for a frame shorter than an Ethernet header, EBADFD once the
    /// netdev was deleted, EBADF after `close()`.
    @inlinable
    public func write(_ buffer: UnsafeRawBufferPointer) -> IOResult {
        let fd = self.fd
        guard fd >= 0 else { return .failed(EBADF) }
        return Syscall.io { cl_write(fd, buffer.baseAddress, UInt(buffer.count)) }
    }

    /// Writes one frame gathered from `count` pieces (wraps writev(2)): e.g. a vnet header,
    /// a pushed VLAN tag and the payload without copying them together.
    @inlinable
    public func writev(_ iov: UnsafePointer<iovec>, count: Int32) -> IOResult {
        let fd = self.fd
        guard fd >= 0 else { return .failed(EBADF) }
        return Syscall.io { cl_writev(fd, iov, count) }
    }

    /// Closes the fd (the netdev disappears unless another fd holds it). Idempotent.
    public func close() {
        guard fd >= 0 else { return }
        // Linux releases the fd even when close reports EINTR: never retry close.
        _ = Glibc.close(fd)
        fd = -1
    }
}
