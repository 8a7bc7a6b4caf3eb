import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `tapestry vm console VM`: the caller's terminal connected to the guest's serial console.
///
/// The console is QEMU's chardev socket server; the guest runs a shell on ttyS0. The terminal
/// goes to raw mode (keys, Ctrl-C and Ctrl-D go to the guest) and is restored on every exit
/// path; Ctrl-] (0x1d, telnet's and virsh's escape) detaches. QEMU serves one console client
/// at a time: a second attach waits until the first detaches.
public enum Console {
    /// The detach key, Ctrl-].
    public static let escapeByte: UInt8 = 0x1D

    /// Connects `input`/`output` (the terminal by default) to the console socket until the
    /// user presses Ctrl-] or QEMU closes the connection (the VM stopped). Throws when the
    /// socket cannot be reached (the VM is not running).
    public static func attach(socketPath: String, name: String, input: Int32 = STDIN_FILENO, output: Int32 = STDOUT_FILENO) throws {
        let sock = try connectUnix(socketPath)
        defer { close(sock) }
        writeAll(output, Array("Connected to \(name)'s console (Ctrl-] detaches; press Enter for a prompt).\r\n".utf8))

        var saved = termios()
        let isTerminal = isatty(input) == 1 && tcgetattr(input, &saved) == 0
        if isTerminal {
            var raw = saved
            cfmakeraw(&raw)
            tcsetattr(input, TCSANOW, &raw)
        }
        defer {
            if isTerminal { tcsetattr(input, TCSANOW, &saved) }
            writeAll(output, Array("\r\n[detached from \(name)]\r\n".utf8))
        }

        var buffer = [UInt8](repeating: 0, count: 4096)
        var fds = [pollfd(fd: input, events: Int16(POLLIN), revents: 0), pollfd(fd: sock, events: Int16(POLLIN), revents: 0)]
        while true {
            let r = poll(&fds, 2, -1)
            if r < 0 { if errno == EINTR { continue }; return }
            if fds[1].revents != 0 {
                let n = read(sock, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }  // QEMU closed it: the VM stopped
                writeAll(output, Array(buffer[0..<n]))
            }
            if fds[0].revents != 0 {
                let n = read(input, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }  // end of input (not a terminal)
                let chunk = buffer[0..<n]
                if let esc = chunk.firstIndex(of: escapeByte) {
                    writeAll(sock, Array(chunk[..<esc]))
                    return
                }
                writeAll(sock, Array(chunk))
            }
        }
    }

    static func connectUnix(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw VMError.io(operation: "socket for", path: path, errno: errno) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw VMError.io(operation: "connect to", path: path, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw VMError.io(operation: "connect to console", path: path, errno: e)
        }
        return fd
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == ENOTSOCK {
                let m = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if m < 0 { if errno == EINTR { continue }; return }
                offset += m
                continue
            }
            if n < 0 { if errno == EINTR { continue }; return }
            offset += n
        }
    }
}
