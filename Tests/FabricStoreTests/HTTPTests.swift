import Foundation
import Testing
@testable import FabricStore
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP/1.1 response reader against canned bytes from the other end of a socketpair:
/// framing (Content-Length, chunked, until close), limits, malformed input, deadlines.
@Suite struct HTTPTests {
    /// Writes `raw` into one end (then closes it unless `keepOpen`) and reads a response
    /// from the other.
    func read(_ raw: String, keepOpen: Bool = false, maxBody: Int = 1 << 20, timeout: Double = 2) throws -> (Int, String) {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        let writer = fds[1]
        _ = raw.utf8CString.withUnsafeBufferPointer { send(writer, $0.baseAddress, $0.count - 1, 0) }
        if !keepOpen { close(writer) }
        defer { if keepOpen { close(writer) } }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        let c = StreamConnection.adopting(fds[0])
        var status = 0
        var body: [UInt8] = []
        try HTTP1.readResponse(c, deadline: .after(timeout), maxBody: maxBody, onHead: { status = $0.status }, onBody: { body += $0; return true })
        return (status, String(decoding: body, as: UTF8.self))
    }

    @Test func framings() throws {
        #expect(try read("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA") == (200, "hello"))
        #expect(try read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n") == (200, "hello, world"))
        #expect(try read("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n{\"a\":1}") == (503, "{\"a\":1}"))
        #expect(try read("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n") == (200, ""))
    }

    @Test func malformedAndOversizeResponsesFail() {
        for bad in ["garbage\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n", "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "HTTP/1.1 200 OK\r\n"] {
            #expect(throws: (any Error).self, "\(bad.debugDescription)") { try read(bad) }
        }
        #expect(throws: (any Error).self) { try read("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + String(repeating: "x", count: 100), maxBody: 99) }
        #expect(throws: (any Error).self) { try read("HTTP/1.1 200 OK\r\nX: " + String(repeating: "y", count: 70_000) + "\r\n\r\n") }
    }

    @Test func aSilentServerCostsTheDeadlineOnly() {
        let t0 = Deadline.now()
        #expect(throws: (any Error).self) { try read("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", keepOpen: true, timeout: 0.3) }
        let took = Deadline.now() - t0
        #expect(took >= 0.29 && took < 1.0)
    }
}
