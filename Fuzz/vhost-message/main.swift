// libFuzzer target "vhost-message": the vhost-user message parser (header + payload) that
// every byte a frontend sends goes through before the device acts on it.
//
// Input: byte 0 = how many descriptors "arrived" with each message (0–8), then messages
// back to back as on the socket: 12-byte header, payload of the header's size. Parsing stops
// at the first malformed header (the connection would be closed there).
// Besides "does not trap", checks: a parsed memory table has 1–8 non-empty regions that do
// not wrap and as many descriptors as regions; ring indexes fit 32 bits, kick/call indexes
// 8; a request parsed from bytes re-parses identically from the same bytes.
import Model

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-vhost-message invariant violated: \(what())") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let fds = Int(data[0] % 9)
    var offset = 1
    var messages = 0
    while offset + VhostMessageHeader.size <= size && messages < 64 {
        messages += 1
        let headerBytes = UnsafeRawBufferPointer(start: data + offset, count: VhostMessageHeader.size)
        guard case .success(let header) = VhostMessageHeader.parse(headerBytes) else { return 0 }
        check(Int(header.size) <= VhostMessageHeader.maxPayload, "payload bound")
        offset += VhostMessageHeader.size
        let n = min(Int(header.size), size - offset)
        let payload = UnsafeRawBufferPointer(start: data + offset, count: n)
        offset += n
        let first = VhostMessage.parse(header: header, payload: payload, fdCount: fds)
        let again = VhostMessage.parse(header: header, payload: payload, fdCount: fds)
        check(first == again, "parse is a function of its input")
        guard case .success(let request) = first else { continue }
        check(n == Int(header.size), "a truncated payload never parses")
        switch request {
        case .setMemTable(let regions):
            check((1...GuestMemory.maxRegions).contains(regions.count), "region count")
            check(regions.count == fds, "one descriptor per region")
            for r in regions {
                check(r.size > 0, "empty region")
                check(!r.guestPhysicalAddress.addingReportingOverflow(r.size).overflow, "gpa wraps")
                check(!r.frontendAddress.addingReportingOverflow(r.size).overflow, "uva wraps")
            }
        case .setVringKick(let i, let has), .setVringCall(let i, let has), .setVringErr(let i, let has):
            check(i <= 0xFF, "vring fd index is 8 bits")
            check((has ? 1 : 0) == fds, "descriptor count")
        case .setVringNum(let i, let num), .setVringBase(let i, let num):
            check(i >= 0 && i <= Int(UInt32.max) && num >= 0 && num <= Int(UInt32.max), "32-bit fields")
        case .setLogBase:
            check(fds == 1, "log fd")
        default:
            break
        }
        _ = request.hasReply
    }
    return 0
}
