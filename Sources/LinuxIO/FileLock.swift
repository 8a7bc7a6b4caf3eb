#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An exclusive advisory lock on a file: flock(2) `LOCK_EX` on an open file description.
///
/// One running instance per identity is enforced with one of these (`/run/tapestry/STEM.lock`):
/// the winner of a race holds it for its whole life, every other contender gets `nil` from
/// `tryAcquire` and touches nothing. The kernel drops the lock when the last fd of the open
/// file description closes, so a crashed holder (kill -9) frees it at once; no stale lock
/// needs breaking. A `fork`ed or spawned child that inherits the fd (dup2 onto a fixed
/// number) shares the same lock: the parent may then close its copy and exit.
///
/// Removal is race-free: a holder unlinks the file *while still holding it* (`release(removing:)`),
/// and `tryAcquire` re-checks after locking that the path still names the inode it locked
/// (an fstat/stat comparison, the classic lock-file protocol); if the file was removed
/// meanwhile, it retries on the new file. Needs write access to the directory; no
/// capabilities.
public final class FileLock {
    /// The lock file.
    public let path: String
    /// The open file description's fd, or -1 after `release`.
    public private(set) var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { if fd >= 0 { _ = Glibc.close(fd) } }

    /// Takes the lock without waiting: creates `path` (mode `mode`, O_CLOEXEC, O_NOFOLLOW)
    /// if needed and locks it. Returns nil when another open file description holds it.
    /// - Throws: `SystemError` naming the path and errno when the file cannot be created or
    ///   opened (ENOSPC on a full directory, EACCES, ELOOP for a symlink…); a file this
    ///   call created is removed again on failure.
    public static func tryAcquire(path: String, mode: mode_t = 0o600) throws -> FileLock? {
        for _ in 0..<16 {
            let existed = access(path, F_OK) == 0
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode)
            if fd < 0 {
                throw SystemError(operation: "create lock file", subject: path, errno: errno)
            }
            var r: Int32
            repeat { r = flock(fd, LOCK_EX | LOCK_NB) } while r < 0 && errno == EINTR
            if r < 0 {
                let e = errno
                _ = Glibc.close(fd)
                if e == EWOULDBLOCK { return nil }
                if !existed { unlink(path) }
                throw SystemError(operation: "flock", subject: path, errno: e)
            }
            // Locked: but is it still the file at `path`? A holder that was releasing may
            // have unlinked it between our open and our flock.
            var held = stat(), current = stat()
            if fstat(fd, &held) == 0, stat(path, &current) == 0, held.st_ino == current.st_ino, held.st_dev == current.st_dev {
                return FileLock(path: path, fd: fd)
            }
            _ = Glibc.close(fd)
        }
        throw SystemError(operation: "flock (the lock file kept being replaced)", subject: path, errno: EAGAIN)
    }

    /// Adopts an inherited fd (e.g. 3, passed by a parent that took the lock) as the lock on
    /// `path`. Re-locks it (a no-op on the same open file description) and checks it is the
    /// file at `path`.
    /// - Throws: `SystemError` when `fd` is not open, is another file, or the lock is held
    ///   by someone else (EWOULDBLOCK).
    public static func adopt(fd: Int32, path: String) throws -> FileLock {
        var held = stat(), current = stat()
        guard fstat(fd, &held) == 0 else { throw SystemError(operation: "adopt lock fd \(fd)", subject: path, errno: errno) }
        guard stat(path, &current) == 0, held.st_ino == current.st_ino, held.st_dev == current.st_dev else {
            throw SystemError(operation: "adopt lock fd \(fd) (not the lock file)", subject: path, errno: ESTALE)
        }
        var r: Int32
        repeat { r = flock(fd, LOCK_EX | LOCK_NB) } while r < 0 && errno == EINTR
        guard r == 0 else { throw SystemError(operation: "flock", subject: path, errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return FileLock(path: path, fd: fd)
    }

    /// Gives up the lock. With `removing`, unlinks the file first, while still holding it, so
    /// no contender can lock a file that is about to vanish (see the type's doc). Idempotent.
    public func release(removing: Bool) {
        guard fd >= 0 else { return }
        if removing { unlink(path) }
        _ = Glibc.close(fd)
        fd = -1
    }

    /// Closes this process's fd without unlinking. The lock stays held while another process
    /// holds a copy of the same open file description (a spawned daemon). Idempotent.
    public func closeDescriptor() {
        guard fd >= 0 else { return }
        _ = Glibc.close(fd)
        fd = -1
    }
}
