// libFuzzer target "pcap": CaptureFile.read(path:) — the reader behind `tapestry trace --pcap`
// — on classic pcap and pcapng files. The input is written to a per-process file in /dev/shm
// (or $TMPDIR) first, because the reader takes a path (pcap_open_offline). Every frame read is
// then parsed with FrameHeader.parse, as trace does. libpcap itself is not instrumented, so
// coverage guidance only sees the Swift side; ASan still catches bad reads of its buffers.
import Capture
import Glibc
import Model

private let path: String = {
    let dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")
    return "\(dir)/tapestry-fuzz-pcap-\(getpid())"
}()

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-pcap invariant violated: \(what())") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { fatalError("fuzz-pcap: cannot create \(path): errno \(errno)") }
    var off = 0
    while off < size {
        let n = write(fd, data + off, size - off)
        if n <= 0 { fatalError("fuzz-pcap: write failed: errno \(errno)") }
        off += n
    }
    close(fd)
    defer { unlink(path) }
    for limit in [Int.max, 1] {
        guard let frames = try? CaptureFile.read(path: path, limit: limit) else { continue }
        check(frames.count <= limit, "read \(frames.count) frames with limit \(limit)")
        for f in frames {
            _ = f.bytes.withUnsafeBytes { FrameHeader.parse($0) }
        }
    }
    return 0
}
