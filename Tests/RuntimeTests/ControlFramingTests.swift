import Foundation
@testable import Runtime
import Testing

/// `ControlRequestFraming`: what the control socket's reader makes of the bytes a client sent
/// (the pure half of `ControlServer.readRequest`, also run by the control fuzzer).
@Test func controlRequestsAreFramedAsOneLineWithinTheLimit() {
    let status = Array(#"{"command":"status"}"#.utf8)
    #expect(ControlRequestFraming.of(status, ended: false, limit: 64) == .incomplete)
    #expect(ControlRequestFraming.of(status, ended: true, limit: 64) == .line(status[...]), "a closed sending side ends the request")
    let twoLines = status + [0x0A] + Array("junk".utf8)
    #expect(ControlRequestFraming.of(twoLines, ended: false, limit: 64) == .line(twoLines[..<status.count]), "the first line only")
    // A line of exactly the limit, then its newline (the reader's limit + 1 bytes): accepted.
    let exact = [UInt8](repeating: 0x20, count: 64) + [0x0A]
    #expect(ControlRequestFraming.of(exact, ended: false, limit: 64) == .line(exact[..<64]))
    // One byte more without a newline: refused, whether or not the client is done.
    let over = [UInt8](repeating: 0x20, count: 65)
    #expect(ControlRequestFraming.of(over, ended: false, limit: 64) == .tooLarge)
    #expect(ControlRequestFraming.of(over, ended: true, limit: 64) == .tooLarge)
    #expect(ControlRequest.decode(line: status[...]) == ControlRequest(command: "status"))
    #expect(ControlRequest.decode(line: Array("{".utf8)[...]) == nil)
}
