import Foundation
import Glibc
import Testing
import TestSupport
@testable import LinuxIO

/// A private scratch directory under /tmp, removed afterwards.
func scratchDirectory(_ tag: String) -> String {
    let dir = NSTemporaryDirectory() + "tio-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    mkdir(dir, 0o700)
    return dir
}

func entries(_ dir: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

/// A tiny tmpfs mounted on a scratch directory of ours (never on /run), for ENOSPC; root only.
final class TinyTmpfs {
    let path: String
    let mounted: Bool
    init(options: String) {
        path = scratchDirectory("tmpfs")
        mounted = sh("mount -t tmpfs -o \(options),mode=0700 tio-tiny '\(path)'").succeeded
    }
    deinit {
        if mounted { sh("umount '\(path)'") }
        rmdir(path)
    }
}

@Suite struct FileLockTests {
    @Test func onlyOneHolderAndRemovalOnRelease() throws {
        let dir = scratchDirectory("lock")
        defer { sh("rm -rf '\(dir)'") }
        let path = dir + "/x.lock"
        let a = try #require(try FileLock.tryAcquire(path: path))
        // A second open file description (as another process would have) does not get it.
        #expect(try FileLock.tryAcquire(path: path) == nil)
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)
        a.release(removing: true)
        #expect(entries(dir).isEmpty, "release(removing:) unlinks the lock file")
        let b = try #require(try FileLock.tryAcquire(path: path), "free again after release")
        b.release(removing: true)
    }

    @Test func aDeadHoldersLockIsFreeAtOnce() throws {
        let dir = scratchDirectory("lockdead")
        defer { sh("rm -rf '\(dir)'") }
        let path = dir + "/x.lock"
        // flock(1) in a child process holds it, as a daemon would.
        let pidFile = dir + "/pid"
        // The shell takes the lock on fd 9 and execs into sleep, which keeps it: one process.
        sh("(sh -c 'exec 9>\"$0\" && flock -n 9 && exec sleep 30' '\(path)' & echo $! >'\(pidFile)')")
        var held = false
        for _ in 0..<100 {
            if try FileLock.tryAcquire(path: path) == nil { held = true; break }
            usleep(20_000)
        }
        #expect(held, "the child's lock is seen as held")
        let pid = Int32((try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        try #require(pid > 0)
        kill(pid, SIGKILL)
        var got: FileLock?
        for _ in 0..<100 {
            got = try FileLock.tryAcquire(path: path)
            if got != nil { break }
            usleep(20_000)
        }
        #expect(got != nil, "kill -9 of the holder frees the lock")
        got?.release(removing: true)
    }

    @Test func aLockFileRemovedUnderAContenderIsNotShared() throws {
        // A holder that releases (unlinking) while a contender already opened the old file:
        // the contender must not end up holding a lock on a file that no longer exists.
        let dir = scratchDirectory("lockrace")
        defer { sh("rm -rf '\(dir)'") }
        let path = dir + "/x.lock"
        for _ in 0..<50 {
            let a = try #require(try FileLock.tryAcquire(path: path))
            let t = Thread { usleep(UInt32.random(in: 0...300)); a.release(removing: true) }
            t.start()
            var b: FileLock?
            for _ in 0..<2000 {
                b = try FileLock.tryAcquire(path: path)
                if b != nil { break }
                usleep(50)
            }
            t.cancel()
            let lock = try #require(b)
            var held = stat(), current = stat()
            #expect(fstat(lock.fd, &held) == 0 && stat(path, &current) == 0 && held.st_ino == current.st_ino, "holds the file at the path")
            lock.release(removing: true)
            usleep(1000)
        }
    }

    @Test func adoptTakesOverAnInheritedDescriptor() throws {
        let dir = scratchDirectory("lockadopt")
        defer { sh("rm -rf '\(dir)'") }
        let path = dir + "/x.lock"
        let a = try #require(try FileLock.tryAcquire(path: path))
        let copy = dup(a.fd)
        a.closeDescriptor()
        #expect(try FileLock.tryAcquire(path: path) == nil, "the dup still holds the lock")
        let adopted = try FileLock.adopt(fd: copy, path: path)
        #expect(throws: SystemError.self) { try FileLock.adopt(fd: 999, path: path) }
        adopted.release(removing: true)
        #expect(entries(dir).isEmpty)
    }

    @Test(.enabled(if: Capabilities.isRoot, "mounting a tmpfs needs root"))
    func aFullDirectoryIsALoudErrorAndLeavesNothing() throws {
        let fs = TinyTmpfs(options: "size=64k,nr_inodes=1")
        try #require(fs.mounted)
        do {
            _ = try FileLock.tryAcquire(path: fs.path + "/x.lock")
            Issue.record("expected ENOSPC")
        } catch let e as SystemError {
            #expect(e.errno == ENOSPC && e.description.contains(fs.path + "/x.lock"), "\(e)")
        }
        #expect(entries(fs.path).isEmpty)
    }
}

@Suite struct AtomicFileTests {
    @Test func replacesTheFileWholeWithItsModeAndNoTemporaryLeft() throws {
        let dir = scratchDirectory("atomic")
        defer { sh("rm -rf '\(dir)'") }
        let path = dir + "/x.state"
        try AtomicFile.write(Array("one".utf8), to: path)
        try AtomicFile.write(Array("two, longer".utf8), to: path, mode: 0o640)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "two, longer")
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o640)
        #expect(entries(dir) == ["x.state"], "no temporary file left")
    }

    @Test func concurrentWritersNeverShareATemporaryFile() throws {
        let dir = scratchDirectory("atomicrace")
        defer { sh("rm -rf '\(dir)'") }
        let path = dir + "/x.state"
        let texts = (0..<8).map { "writer \($0) " + String(repeating: "\($0)", count: 5000) }
        DispatchQueue.concurrentPerform(iterations: 8 * 20) { i in
            try? AtomicFile.write(Array(texts[i % 8].utf8), to: path)
        }
        let final = try String(contentsOfFile: path, encoding: .utf8)
        #expect(texts.contains(final), "the file is one writer's whole text")
        #expect(entries(dir) == ["x.state"])
    }

    @Test func aMissingDirectoryIsAnErrorNamingThePath() {
        #expect(throws: SystemError.self) { try AtomicFile.write([1], to: "/nonexistent-tio/x.state") }
    }

    @Test(.enabled(if: Capabilities.isRoot, "mounting a tmpfs needs root"))
    func aFullFileSystemIsALoudErrorAndLeavesNothing() throws {
        // One 4 KiB page: the temporary file is created, its write fails with ENOSPC.
        let fs = TinyTmpfs(options: "size=4k")
        try #require(fs.mounted)
        let path = fs.path + "/x.state"
        do {
            try AtomicFile.write([UInt8](repeating: 7, count: 64 * 1024), to: path)
            Issue.record("expected ENOSPC")
        } catch let e as SystemError {
            #expect(e.errno == ENOSPC && e.description.contains(path), "\(e)")
        }
        #expect(entries(fs.path).isEmpty, "no .tmp left: \(entries(fs.path))")
        // No inode for the temporary file at all.
        let none = TinyTmpfs(options: "size=64k,nr_inodes=1")
        try #require(none.mounted)
        #expect(throws: SystemError.self) { try AtomicFile.write([1], to: none.path + "/x.state") }
        #expect(entries(none.path).isEmpty)
    }
}

@Suite struct UnixSocketTests {
    @Test func listenerServesAClientWithMode0600AndPeerCredentials() throws {
        let dir = scratchDirectory("unix")
        defer { sh("rm -rf '\(dir)'") }
        let path = dir + "/x.sock"
        let listener = try UnixListener(path: path)
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600, "socket file is 0600")
        #expect(try listener.accept() == nil, "nobody waits: nil, not a block")
        let client = try UnixConnection.connect(path: path, receiveTimeoutSeconds: 2)
        var server: UnixConnection?
        for _ in 0..<100 where server == nil { server = try listener.accept(); if server == nil { usleep(10_000) } }
        let s = try #require(server)
        #expect(s.peerCredentials()?.pid == getpid())
        #expect(s.peerCredentials()?.uid == geteuid())
        #expect(client.send(Array("hello\n".utf8)))
        var got: [UInt8] = []
        #expect(s.waitReadable(milliseconds: 1000))
        _ = s.receive(appendingTo: &got)
        #expect(String(decoding: got, as: UTF8.self) == "hello\n")
        #expect(s.receive(appendingTo: &got) == .wouldBlock, "accepted sockets are non-blocking")
        #expect(!s.peerHungUp())
        client.close()
        #expect(s.waitReadable(milliseconds: 1000) && s.peerHungUp(), "a closed client is a hang-up")
        listener.close(removing: true)
        #expect(entries(dir).isEmpty, "close(removing:) unlinks the socket file")
    }

    @Test func pathsTooLongAndMissingListenersAreErrors() {
        #expect(throws: SystemError.self) { try UnixListener(path: "/tmp/" + String(repeating: "x", count: 120)) }
        #expect(throws: SystemError.self) { try UnixConnection.connect(path: "/tmp/tio-no-such-\(getpid()).sock") }
    }

    @Test(.enabled(if: Capabilities.isRoot, "mounting a tmpfs needs root"))
    func bindingOnAFullFileSystemIsALoudErrorAndLeavesNothing() throws {
        let fs = TinyTmpfs(options: "size=64k,nr_inodes=1")
        try #require(fs.mounted)
        do {
            _ = try UnixListener(path: fs.path + "/x.sock")
            Issue.record("expected ENOSPC")
        } catch let e as SystemError {
            #expect(e.errno == ENOSPC && e.description.contains(fs.path + "/x.sock"), "\(e)")
        }
        #expect(entries(fs.path).isEmpty)
    }
}
