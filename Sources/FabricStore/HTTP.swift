import Foundation

/// The head of an HTTP/1.1 response (RFC 9112 §4, §5).
struct HTTPResponseHead {
    var status: Int
    /// Header fields, names lower-cased.
    var fields: [String: String]
}

/// A minimal HTTP/1.1 client exchange (RFC 9112) over one `StreamConnection`: one POST with
/// a JSON body, `Connection: close`, and a response framed by Content-Length, chunked
/// transfer coding (§7.1) or the end of the connection. Bounded: the head at 64 KiB, the
/// body at `maxBody` bytes; every read by the deadline.
///
/// Why not URLSession: swift-corelibs-foundation on Linux cannot present a client
/// certificate (no SecIdentity), and its timeouts do not bound connection set-up to a dead
/// member as tightly as poll(2) does here.
enum HTTP1 {
    static let maxHead = 64 * 1024

    /// Sends `POST path` with `body` (JSON) to `authority` ("host:port").
    static func sendPOST(_ connection: StreamConnection, authority: String, path: String, body: [UInt8], deadline: Deadline) throws {
        var request = Array("POST \(path) HTTP/1.1\r\nHost: \(authority)\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8)
        request.append(contentsOf: body)
        try connection.write(request, deadline: deadline)
    }

    /// Reads the response: the head, then the decoded body handed to `onBody` piece by piece
    /// as it arrives (a streaming response such as a watch), until the body ends (returns
    /// normally), `onBody` returns false (returns normally; the caller closes the
    /// connection), the body exceeds `maxBody`, or the deadline passes (throws).
    static func readResponse(_ connection: StreamConnection, deadline: Deadline, maxBody: Int,
                             onHead: (HTTPResponseHead) throws -> Void = { _ in },
                             onBody: ([UInt8]) throws -> Bool) throws {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(4096)
        // Head.
        var headEnd: Int?
        var scanned = 0
        while headEnd == nil {
            if buffer.count > maxHead { throw TransportError("HTTP response head over \(maxHead) bytes") }
            let n = try connection.read(into: &buffer, max: 16384, deadline: deadline)
            if n == 0 { throw TransportError("connection closed before the HTTP response head") }
            headEnd = findCRLFCRLF(buffer, from: max(0, scanned - 3))
            scanned = buffer.count
        }
        if headEnd! > maxHead { throw TransportError("HTTP response head over \(maxHead) bytes") }
        let head = try parseHead(Array(buffer[0..<headEnd!]))
        try onHead(head)
        buffer.removeFirst(headEnd! + 4)

        var total = 0
        func deliver(_ bytes: [UInt8]) throws -> Bool {
            total += bytes.count
            if total > maxBody { throw TransportError("HTTP response body over \(maxBody) bytes") }
            return bytes.isEmpty ? true : try onBody(bytes)
        }

        if head.fields["transfer-encoding"]?.lowercased().contains("chunked") == true {
            // chunk = size [;ext] CRLF data CRLF; last-chunk = 0 CRLF; then trailers CRLF.
            while true {
                var lineEnd = findCRLF(buffer, from: 0)
                while lineEnd == nil {
                    if buffer.count > 1024 { throw TransportError("HTTP chunk size line too long") }
                    if try connection.read(into: &buffer, max: 16384, deadline: deadline) == 0 {
                        throw TransportError("connection closed inside a chunked body")
                    }
                    lineEnd = findCRLF(buffer, from: 0)
                }
                let sizeText = String(decoding: buffer[0..<lineEnd!], as: UTF8.self)
                    .split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                guard let size = Int(sizeText, radix: 16), size >= 0 else {
                    throw TransportError("malformed HTTP chunk size '\(sizeText)'")
                }
                if size > maxBody { throw TransportError("HTTP chunk of \(size) bytes over the limit") }
                buffer.removeFirst(lineEnd! + 2)
                if size == 0 { return }   // trailers ignored; the connection is closed anyway
                while buffer.count < size + 2 {
                    if try connection.read(into: &buffer, max: max(16384, size + 2 - buffer.count), deadline: deadline) == 0 {
                        throw TransportError("connection closed inside an HTTP chunk")
                    }
                }
                guard buffer[size] == 13, buffer[size + 1] == 10 else { throw TransportError("HTTP chunk not followed by CRLF") }
                let data = Array(buffer[0..<size])
                buffer.removeFirst(size + 2)
                if try !deliver(data) { return }
            }
        } else if let lengthText = head.fields["content-length"] {
            guard let length = Int(lengthText.trimmingCharacters(in: .whitespaces)), length >= 0 else {
                throw TransportError("malformed Content-Length '\(lengthText)'")
            }
            if length > maxBody { throw TransportError("HTTP response body of \(length) bytes over \(maxBody)") }
            while buffer.count < length {
                if try connection.read(into: &buffer, max: max(16384, length - buffer.count), deadline: deadline) == 0 {
                    throw TransportError("connection closed after \(buffer.count) of \(length) body bytes")
                }
            }
            _ = try deliver(Array(buffer[0..<length]))
        } else {
            // Delimited by the end of the connection (RFC 9112 §6.3, rule 8).
            if try !deliver(buffer) { return }
            while true {
                var more: [UInt8] = []
                if try connection.read(into: &more, max: 16384, deadline: deadline) == 0 { return }
                if try !deliver(more) { return }
            }
        }
    }

    static func parseHead(_ bytes: [UInt8]) throws -> HTTPResponseHead {
        let text = String(decoding: bytes, as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]), (100...999).contains(status) else {
            throw TransportError("malformed HTTP status line '\(statusLine.prefix(80))'")
        }
        var fields: [String: String] = [:]
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { throw TransportError("malformed HTTP header line '\(line.prefix(80))'") }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            fields[name] = fields[name].map { $0 + ", " + value } ?? value
        }
        return HTTPResponseHead(status: status, fields: fields)
    }

    static func findCRLFCRLF(_ b: [UInt8], from: Int) -> Int? {
        guard b.count >= 4 else { return nil }
        var i = from
        while i + 3 < b.count {
            if b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i }
            i += 1
        }
        return nil
    }

    static func findCRLF(_ b: [UInt8], from: Int) -> Int? {
        var i = from
        while i + 1 < b.count {
            if b[i] == 13 && b[i + 1] == 10 { return i }
            i += 1
        }
        return nil
    }
}
