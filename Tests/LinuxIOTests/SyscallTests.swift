import CLinux
import Foundation
import Glibc
import Testing
@testable import LinuxIO

@Suite struct SyscallTests {
    @Test func systemErrorDescribesOperationSubjectAndReason() {
        let e = SystemError(operation: "open /dev/net/tun", subject: "tap tp1234", errno: EPERM)
        #expect(e.description == "open /dev/net/tun (tap tp1234): Operation not permitted")
        #expect(SystemError(operation: "eventfd", subject: "", errno: -EMFILE).description == "eventfd: Too many open files")
    }

    @Test func syscallRetriesEINTRAndReportsEAGAINAsAValue() throws {
        var calls = 0
        let r = try Syscall.call("test") { () -> Int32 in calls += 1; return calls < 3 ? -EINTR : 7 }
        guard case .value(7) = r else { Issue.record("expected value 7, got \(r)"); return }
        #expect(calls == 3)
        guard case .wouldBlock = try Syscall.call("test", { -EAGAIN as Int32 }) else { Issue.record("expected wouldBlock"); return }
        #expect(Syscall.io { -Int(EAGAIN) } == .wouldBlock)
        #expect(Syscall.io { -Int(EIO) } == .failed(EIO))
        #expect(Syscall.io { 60 } == .bytes(60))
    }

    @Test func syscallThrowsSystemErrorWithContext() {
        #expect(throws: SystemError(operation: "open", subject: "file x", errno: ENOENT)) {
            try Syscall.require("open", subject: "file x") { -ENOENT as Int32 }
        }
    }

    @Test func tapNameTooLongIsRejectedBeforeTheKernel() {
        do {
            _ = try TAPDevice(name: "tio-name-way-too-long")
            Issue.record("expected an error")
        } catch let e as SystemError {
            #expect(e.errno == ENAMETOOLONG)
            #expect(e.description.contains("tap tio-name-way-too-long"))
        } catch { Issue.record("unexpected \(error)") }
    }

    @Test func namespaceNamesMustBePlainFileNames() {
        #expect(throws: SystemError.self) { try NetworkNamespace.create("../etc") }
        #expect(!NetworkNamespace.exists("../netns"))
    }
}

@Suite struct EpollTests {
    @Test func epollWakesOnEventFD() throws {
        let ep = try Epoll()
        let ev = try EventFD()
        try ep.add(ev.fd, events: Epoll.readable, data: 7)
        var events = [EpollEvent](repeating: EpollEvent(), count: 8)
        let none = try events.withUnsafeMutableBufferPointer { try ep.wait(into: $0, timeoutMilliseconds: 0) }
        #expect(none == 0)

        ev.signal(); ev.signal()
        let n = try events.withUnsafeMutableBufferPointer { try ep.wait(into: $0, timeoutMilliseconds: 1000) }
        #expect(n == 1)
        #expect(events[0].data == 7)
        #expect(events[0].events & Epoll.readable != 0)
        #expect(ev.drain() == 2)
        #expect(ev.drain() == 0)
        let after = try events.withUnsafeMutableBufferPointer { try ep.wait(into: $0, timeoutMilliseconds: 0) }
        #expect(after == 0)

        try ep.remove(ev.fd)
        ev.close(); ev.close()
        ep.close(); ep.close()
        #expect(ev.fd == -1 && ep.fd == -1)
    }

    @Test func epollWakesOnSignalFromAnotherThread() throws {
        let ep = try Epoll()
        let ev = try EventFD()
        try ep.add(ev.fd, data: 99)
        let t = Thread { usleep(50_000); ev.signal() }
        t.start()
        var events = [EpollEvent](repeating: EpollEvent(), count: 4)
        let n = try events.withUnsafeMutableBufferPointer { try ep.wait(into: $0, timeoutMilliseconds: 5000) }
        #expect(n == 1 && events[0].data == 99)
    }

    @Test func addingABadFDThrows() throws {
        let ep = try Epoll()
        // /dev/null is a regular-ish file: epoll refuses it with EPERM.
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        #expect(throws: SystemError.self) { try ep.add(fd, data: 1) }
    }
}
