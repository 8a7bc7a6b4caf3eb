#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinux

/// The character-device end of a Linux TAP interface: one fd per queue that reads and
/// writes whole Ethernet frames of the netdev with the same name.
///
/// The switch owns the fds; the netdev may be moved into a guest's namespace (as `eth0`)
/// and keeps working — see DESIGN.md "Attaching guests". The device is non-persistent: the
/// netdev disappears when the last fd closes. The fds are non-blocking, so reads and writes
/// return `.wouldBlock` instead of sleeping; wait for readability with `Epoll`.
///
/// A multiqueue TAP (`queues > 1`, IFF_MULTI_QUEUE) has one fd per queue. The kernel puts
/// each frame the guest sends on one queue by flow (and remembers, per flow, the queue a
/// frame *to* the guest was written on, so a reply comes back on the queue its request
/// went in by): each datapath thread reads its own queues and writes through its own.
///
/// Not thread-safe for `close()` racing with I/O: one owner at a time per queue.
public final class TAPDevice {
    /// The first queue's fd, or -1 after `close()`.
    public var fd: Int32 { queueFDs[0] }
    /// How many queue fds this TAP has.
    public let queueCount: Int
    /// The fd of queue `queue` (for epoll), or -1 after `close()`.
    public func pollFD(queue: Int) -> Int32 { queueFDs[queue] }
    /// The fds by queue (a raw buffer: no reference counting on the per-frame path).
    @usableFromInline let queueFDs: UnsafeMutablePointer<Int32>
    /// The netdev's name as the kernel assigned it.
    public let name: String
    /// Whether each frame is preceded by a `virtio_net_hdr` (`IFF_VNET_HDR`).
    public let vnetHeader: Bool


    /// Creates (or attaches to) the TAP netdev `name`.
    ///
    /// Wraps `cl_tap_open`: open("/dev/net/tun", O_RDWR|O_NONBLOCK|O_CLOEXEC) and
    /// ioctl(TUNSETIFF, IFF_TAP|IFF_NO_PI[|IFF_VNET_HDR][|IFF_MULTI_QUEUE]), once per queue.
    /// Needs CAP_NET_ADMIN.
    /// - Parameters:
    ///   - name: at most 15 bytes; empty lets the kernel pick `tapN`.
    ///   - queues: 1 (a plain TAP) to 256 (IFF_MULTI_QUEUE with that many queue fds).
    /// - Throws: `SystemError`: EPERM without CAP_NET_ADMIN, ENAMETOOLONG, EBUSY if another
    ///   fd holds that (single-queue) TAP, EINVAL if a non-TAP link has that name. A
    ///   multiqueue TAP that already exists under `name` is joined, not refused: callers
    ///   check that the name is free first (Tapestry's preflight does).
    public init(name: String, vnetHeader: Bool = false, queues: Int = 1) throws {
        precondition((1...256).contains(queues), "a TAP has 1 to 256 queues")
        var kernelName = [CChar](repeating: 0, count: 16)
        let multi: Int32 = queues > 1 ? 1 : 0
        let first = try Syscall.require("open /dev/net/tun", subject: "tap \(name)") {
            cl_tap_open(name, vnetHeader ? 1 : 0, multi, &kernelName)
        }
        let kernel = kernelName.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var fds = [first]
        while fds.count < queues {
            do {
                fds.append(try Syscall.require("open /dev/net/tun", subject: "tap \(kernel) queue \(fds.count)") {
                    cl_tap_open(kernel, vnetHeader ? 1 : 0, 1, nil)
                })
            } catch {
                for f in fds { _ = Glibc.close(f) }
                throw error
            }
        }
        // The switch's virtio-net header is 12 bytes (`VNetHeader`); the kernel's default, 10.
        if vnetHeader {
            let rc = cl_tap_set_vnet_hdr_size(first, Int32(VNetHeader.size))
            if rc < 0 {
                for f in fds { _ = Glibc.close(f) }
                throw SystemError(operation: "ioctl TUNSETVNETHDRSZ \(VNetHeader.size)", subject: "tap \(kernel)", errno: -rc)
            }
        }
        queueCount = queues
        queueFDs = .allocate(capacity: queues)
        queueFDs.initialize(from: fds, count: queues)
        self.name = kernel
        self.vnetHeader = vnetHeader
    }

    deinit { close(); queueFDs.deallocate() }

    /// Turns on checksum offload and TSO for the TAP (wraps `cl_tap_set_offload`, ioctl
    /// TUNSETOFFLOAD). Needs `vnetHeader`. The guest-side netdev then sends 64 KiB GSO
    /// frames with partial checksums, each described by the vnet header before the frame.
    public func enableOffloads() throws {
        _ = try Syscall.require("ioctl TUNSETOFFLOAD", subject: "tap \(name)") { cl_tap_set_offload(fd, 1) }
    }

    /// Sets the size of the virtio-net header in front of every frame read from or written
    /// to this TAP's fds (wraps `cl_tap_set_vnet_hdr_size`, ioctl TUNSETVNETHDRSZ; applies
    /// to every queue): 12 for the switch's `virtio_net_hdr_v1`, 10 for the kernel default.
    /// On reads the kernel fills 10 bytes and skips `num_buffers` (it keeps whatever the
    /// buffer held): readers must not trust bytes 10–11. Needs `vnetHeader`.
    /// - Throws: `SystemError` EINVAL for a size below 10.
    public func setVNetHeaderSize(_ size: Int) throws {
        _ = try Syscall.require("ioctl TUNSETVNETHDRSZ \(size)", subject: "tap \(name)") { cl_tap_set_vnet_hdr_size(fd, Int32(size)) }
    }

    /// The TAP's virtio-net header size (wraps `cl_tap_get_vnet_hdr_size`, TUNGETVNETHDRSZ).
    public func currentVNetHeaderSize() throws -> Int {
        Int(try Syscall.require("ioctl TUNGETVNETHDRSZ", subject: "tap \(name)") { cl_tap_get_vnet_hdr_size(fd) })
    }

    /// Offloads the switch's side of a TAP accepts (TUNSETOFFLOAD flags,
    /// include/uapi/linux/if_tun.h); the guest-facing netdev advertises the matching
    /// features (tx checksumming, TSO, USO).
    public struct Offloads: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// TUN_F_CSUM: frames may carry partial checksums (NEEDS_CSUM).
        public static let checksum = Offloads(rawValue: UInt32(CL_TUN_F_CSUM))
        /// TUN_F_TSO4 / TUN_F_TSO6: TCP GSO frames.
        public static let tso4 = Offloads(rawValue: UInt32(CL_TUN_F_TSO4))
        public static let tso6 = Offloads(rawValue: UInt32(CL_TUN_F_TSO6))
        /// TUN_F_TSO_ECN: TSO frames with CWR set.
        public static let tsoECN = Offloads(rawValue: UInt32(CL_TUN_F_TSO_ECN))
        /// TUN_F_USO4 / TUN_F_USO6 (Linux ≥ 6.2; both or neither): UDP_L4 GSO frames.
        public static let uso4 = Offloads(rawValue: UInt32(CL_TUN_F_USO4))
        public static let uso6 = Offloads(rawValue: UInt32(CL_TUN_F_USO6))
        /// Everything `enableOffloads()` turns on (checksum, TSO4/6, ECN).
        public static let tcp: Offloads = [.checksum, .tso4, .tso6, .tsoECN]
    }

    /// Sets exactly these offloads (wraps `cl_tap_set_offload_flags`, TUNSETOFFLOAD).
    /// Needs `vnetHeader`; `[]` turns them all off.
    /// - Throws: `SystemError` EINVAL for flags the kernel does not know (USO before 6.2).
    public func setOffloads(_ offloads: Offloads) throws {
        _ = try Syscall.require("ioctl TUNSETOFFLOAD 0x\(String(offloads.rawValue, radix: 16))", subject: "tap \(name)") {
            cl_tap_set_offload_flags(fd, offloads.rawValue)
        }
    }

    /// Reads one frame into `buffer` (wraps read(2)). Returns `.bytes(n)` with the frame
    /// length, `.wouldBlock` when no frame is queued, or `.failed(errno)`; a frame longer
    /// than the buffer is truncated by the kernel. `.failed(EBADF)` after `close()`.
    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult { read(queue: 0, into: buffer) }

    /// Reads one frame from queue `queue` (see `read(into:)`).
    @inlinable
    public func read(queue: Int, into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        assert(queue < queueCount)
        let fd = queueFDs[queue]
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
    public func writev(_ iov: UnsafePointer<iovec>, count: Int32) -> IOResult { writev(queue: 0, iov, count: count) }

    /// Writes one frame through queue `queue`'s fd (see `writev(_:count:)`); any queue
    /// delivers it to the guest the same way.
    @inlinable
    public func writev(queue: Int, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult {
        assert(queue < queueCount)
        let fd = queueFDs[queue]
        guard fd >= 0 else { return .failed(EBADF) }
        return Syscall.io { cl_writev(fd, iov, count) }
    }

    /// Closes every queue fd (the netdev disappears unless another fd holds it). Idempotent.
    public func close() {
        for i in 0..<queueCount where queueFDs[i] >= 0 {
            // Linux releases the fd even when close reports EINTR: never retry close.
            _ = Glibc.close(queueFDs[i])
            queueFDs[i] = -1
        }
    }
}
