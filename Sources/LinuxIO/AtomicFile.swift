#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinux

/// Whole-file writes that readers see either entirely old or entirely new.
///
/// `write(_:to:)` writes a unique temporary file in the target's directory (mkostemp(3):
/// `.NAME.XXXXXX`, so concurrent writers never share one), fsyncs it, sets its mode and
/// renames it over the target (rename(2) is atomic within a file system). Every failure —
/// ENOSPC on a full tmpfs, EDQUOT, EACCES, EIO — removes the temporary file and throws a
/// `SystemError` naming the step, the target path and the errno: nothing is left behind.
/// Needs write access to the directory.
public enum AtomicFile {
    /// Replaces `path` with `bytes` (mode `mode`).
    /// - Throws: `SystemError` (operation `create`, `write`, `fsync`, `fchmod` or `rename`;
    ///   subject the target path).
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        var template = Array("\(dir.isEmpty ? "" : dir)/.\(base).XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { cl_mkstemp_cloexec($0.baseAddress!) }
        guard fd >= 0 else { throw SystemError(operation: "create a temporary file for", subject: path, errno: -fd) }
        let tmp = String(cString: template)
        func fail(_ operation: String, _ e: Int32) -> SystemError {
            _ = Glibc.close(fd)
            unlink(tmp)
            return SystemError(operation: operation, subject: path, errno: e)
        }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("write", errno)
            }
            if n == 0 { throw fail("write", EIO) }
            offset += n
        }
        if fchmod(fd, mode) != 0 { throw fail("fchmod", errno) }
        if fsync(fd) != 0 { throw fail("fsync", errno) }
        if Glibc.close(fd) != 0 {
            let e = errno
            unlink(tmp)
            throw SystemError(operation: "close", subject: path, errno: e)
        }
        if rename(tmp, path) != 0 {
            let e = errno
            unlink(tmp)
            throw SystemError(operation: "rename", subject: path, errno: e)
        }
    }
}
