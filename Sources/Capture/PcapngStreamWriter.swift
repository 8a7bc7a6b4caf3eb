#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes a pcapng stream to a file descriptor: a file, a pipe, or stdout for `-w -`.
///
/// The Section Header Block goes out in `init`, an Interface Description Block per
/// `addInterface`, an Enhanced Packet Block per `write`. Each block is one write(2) straight
/// to the fd, with no user-space buffering, so a reader on the other end of a pipe
/// (`tapestry capture -w - | tcpdump -r -`) sees every frame as soon as it is written and
/// never half a block from us.
///
/// Not thread-safe: one capture service owns a writer and drains the capture ring into it
/// (never call it on a forwarding thread; see DESIGN.md "Wrapping C"). Writing to a pipe
/// whose reader went away fails with EPIPE only if SIGPIPE is ignored by the process;
/// otherwise the signal ends it, as it would `tcpdump -w -`.
public final class PcapngStreamWriter {
    private var fd: Int32
    private let closesDescriptor: Bool
    private let subject: String
    private var interfaces: [PcapngInterface] = []

    /// Starts a stream on `fd` by writing the Section Header Block. The fd stays the
    /// caller's unless `closesDescriptor` is true (then `close()`/deinit close it).
    public init(fd: Int32, closesDescriptor: Bool = false) throws {
        self.fd = fd
        self.closesDescriptor = closesDescriptor
        self.subject = "fd \(fd)"
        try emit(Pcapng.sectionHeader())
    }

    /// Creates (or truncates) the file at `path`, mode 0644, and writes the Section Header
    /// Block. The writer owns the file's fd.
    public init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw CaptureError("open \(path) for writing: \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        self.closesDescriptor = true
        self.subject = path
        do { try emit(Pcapng.sectionHeader()) } catch { systemClose(fd); self.fd = -1; throw error }
    }

    deinit { close() }

    /// Writes an Interface Description Block and returns the interface's id (0, 1, … in
    /// the order added), which `write(interface:…)` takes.
    public func addInterface(_ i: PcapngInterface) throws -> UInt32 {
        try emit(Pcapng.interfaceDescription(i))
        interfaces.append(i)
        return UInt32(interfaces.count - 1)
    }

    /// Writes one frame as an Enhanced Packet Block. Bytes beyond the interface's snap
    /// length are not stored; `originalLength` (default: `frame.count`) records the length
    /// on the wire. `timestampNanoseconds` counts from the Unix epoch
    /// (`Pcapng.realtimeNanoseconds()` for now).
    public func write(
        interface: UInt32, timestampNanoseconds: UInt64, frame: [UInt8], originalLength: Int? = nil,
        direction: PacketDirection, comment: String? = nil
    ) throws {
        guard Int(interface) < interfaces.count else {
            throw CaptureError("write pcapng to \(subject): no interface \(interface) (\(interfaces.count) added)")
        }
        let snap = Int(interfaces[Int(interface)].snapLength)
        let stored = snap > 0 ? min(frame.count, snap) : frame.count
        let block = frame.withUnsafeBytes { all in
            Pcapng.enhancedPacket(
                interface: interface, timestampNanoseconds: timestampNanoseconds,
                frame: UnsafeRawBufferPointer(rebasing: all[0..<stored]),
                originalLength: originalLength ?? frame.count, direction: direction, comment: comment)
        }
        try emit(block)
    }

    /// Closes the fd if the writer owns it. Idempotent; later writes throw.
    public func close() {
        if fd >= 0 && closesDescriptor { systemClose(fd) }
        fd = -1
    }

    /// write(2) all of `bytes`, retrying EINTR and short writes (a full pipe).
    private func emit(_ bytes: [UInt8]) throws {
        guard fd >= 0 else { throw CaptureError("write pcapng to \(subject): writer is closed") }
        try bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = systemWrite(fd, buf.baseAddress! + done, buf.count - done)
                if n > 0 { done += n; continue }
                if n < 0 && errno == EINTR { continue }
                let reason = n == 0 ? "wrote nothing" : String(cString: strerror(errno))
                throw CaptureError("write pcapng to \(subject): \(reason)")
            }
        }
    }
}

// The libc calls under names the writer's own `close()`/`write(…)` do not shadow.
private func systemClose(_ fd: Int32) { _ = close(fd) }
private func systemWrite(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buf, count) }

extension Pcapng {
    /// The wall clock (CLOCK_REALTIME) in nanoseconds since the Unix epoch: the time base
    /// of pcapng timestamps with `if_tsresol` 9.
    public static func realtimeNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
