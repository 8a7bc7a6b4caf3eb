import Model

/// vhost-user request codes (QEMU docs/interop/vhost-user.rst, "Front-end message types").
/// Only those this backend acts on are named; others parse as `VhostRequest.unsupported`.
public enum VhostRequestCode: UInt32, CaseIterable {
    case getFeatures = 1, setFeatures = 2, setOwner = 3, resetOwner = 4, setMemTable = 5
    case setLogBase = 6, setLogFD = 7, setVringNum = 8, setVringAddr = 9, setVringBase = 10
    case getVringBase = 11, setVringKick = 12, setVringCall = 13, setVringErr = 14
    case getProtocolFeatures = 15, setProtocolFeatures = 16, getQueueNum = 17, setVringEnable = 18
    case sendRARP = 19, resetDevice = 34, setStatus = 39, getStatus = 40
}

/// The 12-byte message header: `request` u32, `flags` u32 (bits 0–1 version = 1, bit 2
/// reply, bit 3 need_reply), `size` u32 (payload bytes that follow), little-endian.
public struct VhostMessageHeader: Equatable {
    public static let size = 12
    /// Largest payload accepted (the biggest real one, a full memory table, is 264 bytes).
    public static let maxPayload = 4096
    public static let version: UInt32 = 1
    public static let replyFlag: UInt32 = 1 << 2
    public static let needReplyFlag: UInt32 = 1 << 3

    public var request: UInt32
    public var flags: UInt32
    public var size: UInt32

    public init(request: UInt32, flags: UInt32, size: UInt32) {
        self.request = request
        self.flags = flags
        self.size = size
    }

    /// The frontend asks for a REPLY_ACK (honoured only when that protocol feature was negotiated).
    public var needsReply: Bool { flags & Self.needReplyFlag != 0 }

    /// Decodes and checks a header: version 1, not a reply, payload within `maxPayload`.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<VhostMessageHeader, VhostProtocolError> {
        guard bytes.count >= size else { return .failure(.truncated) }
        let h = VhostMessageHeader(request: bytes.le32(0), flags: bytes.le32(4), size: bytes.le32(8))
        if h.flags & 3 != version { return .failure(.badVersion(h.flags)) }
        if h.flags & replyFlag != 0 { return .failure(.unexpectedReply) }
        if Int(h.size) > maxPayload { return .failure(.payloadTooLarge(Int(h.size))) }
        return .success(h)
    }
}

/// One region of SET_MEM_TABLE (32 bytes: guest_phys_addr, memory_size, userspace_addr,
/// mmap_offset, u64 each). Region `i` is mapped from the message's fd `i`.
public struct MemoryRegionDescription: Equatable {
    public var guestPhysicalAddress: UInt64
    public var size: UInt64
    public var frontendAddress: UInt64
    public var mmapOffset: UInt64
    public init(guestPhysicalAddress: UInt64, size: UInt64, frontendAddress: UInt64, mmapOffset: UInt64) {
        self.guestPhysicalAddress = guestPhysicalAddress
        self.size = size
        self.frontendAddress = frontendAddress
        self.mmapOffset = mmapOffset
    }
}

/// SET_VRING_ADDR's payload (40 bytes): index u32, flags u32 (bit 0: log the used ring),
/// then the frontend's addresses of the descriptor table, used ring and avail ring, and the
/// guest-physical address of the used ring for logging.
public struct VringAddress: Equatable {
    public static let logFlag: UInt32 = 1
    public var index: Int
    public var flags: UInt32
    public var descriptors: UInt64
    public var used: UInt64
    public var avail: UInt64
    public var log: UInt64
    public init(index: Int, flags: UInt32, descriptors: UInt64, used: UInt64, avail: UInt64, log: UInt64) {
        self.index = index
        self.flags = flags
        self.descriptors = descriptors
        self.used = used
        self.avail = avail
        self.log = log
    }
}

/// A decoded frontend message.
public enum VhostRequest: Equatable {
    case getFeatures
    case setFeatures(UInt64)
    case setOwner
    /// RESET_OWNER or RESET_DEVICE: back to the state after connecting.
    case reset
    case setMemTable([MemoryRegionDescription])
    /// The log area: `size` bytes at `offset` of the passed fd (LOG_SHMFD).
    case setLogBase(size: UInt64, offset: UInt64)
    case setLogFD
    case setVringNum(index: Int, num: Int)
    case setVringAddr(VringAddress)
    case setVringBase(index: Int, base: Int)
    case getVringBase(index: Int)
    /// `hasFD` false: the frontend set the "invalid fd" bit (no kick: poll the ring).
    case setVringKick(index: Int, hasFD: Bool)
    case setVringCall(index: Int, hasFD: Bool)
    case setVringErr(index: Int, hasFD: Bool)
    case getProtocolFeatures
    case setProtocolFeatures(UInt64)
    case getQueueNum
    case setVringEnable(index: Int, enable: Bool)
    case sendRARP(MACAddress)
    case setStatus(UInt8)
    case getStatus
    /// A request this backend does not implement (it never offered the feature behind it).
    case unsupported(UInt32)

    /// Descriptors the message must carry.
    var expectedFDs: Int {
        switch self {
        case .setMemTable(let regions): regions.count
        case .setLogBase, .setLogFD: 1
        case .setVringKick(_, let has), .setVringCall(_, let has), .setVringErr(_, let has): has ? 1 : 0
        case .unsupported: -1
        default: 0
        }
    }

    /// Whether the protocol defines a reply for it (GET_*; SET_LOG_BASE with LOG_SHMFD).
    public var hasReply: Bool {
        switch self {
        case .getFeatures, .getProtocolFeatures, .getVringBase, .getQueueNum, .getStatus, .setLogBase: true
        default: false
        }
    }
}

/// A message that breaks the protocol: the connection is closed (and counted).
public enum VhostProtocolError: Error, Equatable, CustomStringConvertible {
    case truncated
    case badVersion(UInt32)
    case unexpectedReply
    case payloadTooLarge(Int)
    /// The payload's size is wrong for its request.
    case payloadSize(request: UInt32, expected: Int, got: Int)
    case regionCount(Int)
    /// A region that is empty or whose end overflows 64 bits.
    case invalidRegion(Int)
    case fdCount(request: UInt32, expected: Int, got: Int)

    public var description: String {
        switch self {
        case .truncated: "message truncated"
        case .badVersion(let f): "unsupported message version (flags 0x\(String(f, radix: 16)))"
        case .unexpectedReply: "frontend sent a reply"
        case .payloadTooLarge(let n): "payload of \(n) bytes exceeds \(VhostMessageHeader.maxPayload)"
        case .payloadSize(let r, let e, let g): "request \(r): payload of \(g) bytes, expected \(e)"
        case .regionCount(let n): "memory table with \(n) regions (1…\(GuestMemory.maxRegions))"
        case .invalidRegion(let i): "memory region \(i) is empty or wraps around"
        case .fdCount(let r, let e, let g): "request \(r): \(g) descriptors, expected \(e)"
        }
    }
}

/// Decoding and encoding of vhost-user messages: pure functions over bytes (fuzzed by
/// `Fuzz/vhost-message`).
public enum VhostMessage {
    /// Decodes the payload of a message whose header parsed, given how many descriptors
    /// came with it.
    public static func parse(header: VhostMessageHeader, payload: UnsafeRawBufferPointer, fdCount: Int) -> Result<VhostRequest, VhostProtocolError> {
        let code = header.request
        guard payload.count == Int(header.size) else { return .failure(.truncated) }
        func need(_ n: Int) -> VhostProtocolError? { payload.count == n ? nil : .payloadSize(request: code, expected: n, got: payload.count) }
        let request: VhostRequest
        switch VhostRequestCode(rawValue: code) {
        case nil:
            return .success(.unsupported(code))
        case .getFeatures?: if let e = need(0) { return .failure(e) }; request = .getFeatures
        case .getProtocolFeatures?: if let e = need(0) { return .failure(e) }; request = .getProtocolFeatures
        case .getQueueNum?: if let e = need(0) { return .failure(e) }; request = .getQueueNum
        case .getStatus?: if let e = need(0) { return .failure(e) }; request = .getStatus
        case .setOwner?: if let e = need(0) { return .failure(e) }; request = .setOwner
        case .resetOwner?, .resetDevice?: if let e = need(0) { return .failure(e) }; request = .reset
        case .setFeatures?: if let e = need(8) { return .failure(e) }; request = .setFeatures(payload.le64(0))
        case .setProtocolFeatures?: if let e = need(8) { return .failure(e) }; request = .setProtocolFeatures(payload.le64(0))
        case .setStatus?: if let e = need(8) { return .failure(e) }; request = .setStatus(UInt8(truncatingIfNeeded: payload.le64(0)))
        case .setLogFD?: if let e = need(0) { return .failure(e) }; request = .setLogFD
        case .setLogBase?:
            if let e = need(16) { return .failure(e) }
            request = .setLogBase(size: payload.le64(0), offset: payload.le64(8))
        case .setMemTable?:
            guard payload.count >= 8 else { return .failure(.payloadSize(request: code, expected: 8, got: payload.count)) }
            let n = Int(payload.le32(0))
            guard (1...GuestMemory.maxRegions).contains(n) else { return .failure(.regionCount(n)) }
            guard payload.count >= 8 + 32 * n else { return .failure(.payloadSize(request: code, expected: 8 + 32 * n, got: payload.count)) }
            var regions: [MemoryRegionDescription] = []
            for i in 0..<n {
                let o = 8 + 32 * i
                let r = MemoryRegionDescription(guestPhysicalAddress: payload.le64(o), size: payload.le64(o + 8),
                                                frontendAddress: payload.le64(o + 16), mmapOffset: payload.le64(o + 24))
                let (_, o1) = r.guestPhysicalAddress.addingReportingOverflow(r.size)
                let (_, o2) = r.frontendAddress.addingReportingOverflow(r.size)
                let (_, o3) = r.mmapOffset.addingReportingOverflow(r.size)
                if r.size == 0 || o1 || o2 || o3 || r.size > UInt64(Int.max) { return .failure(.invalidRegion(i)) }
                regions.append(r)
            }
            request = .setMemTable(regions)
        case .setVringNum?, .setVringBase?, .getVringBase?, .setVringEnable?:
            if let e = need(8) { return .failure(e) }
            let index = Int(payload.le32(0)), num = Int(payload.le32(4))
            switch VhostRequestCode(rawValue: code)! {
            case .setVringNum: request = .setVringNum(index: index, num: num)
            case .setVringBase: request = .setVringBase(index: index, base: num)
            case .getVringBase: request = .getVringBase(index: index)
            default: request = .setVringEnable(index: index, enable: num != 0)
            }
        case .setVringAddr?:
            if let e = need(40) { return .failure(e) }
            request = .setVringAddr(VringAddress(index: Int(payload.le32(0)), flags: payload.le32(4), descriptors: payload.le64(8),
                                                 used: payload.le64(16), avail: payload.le64(24), log: payload.le64(32)))
        case .setVringKick?, .setVringCall?, .setVringErr?:
            if let e = need(8) { return .failure(e) }
            let v = payload.le64(0)
            let index = Int(v & 0xFF), hasFD = v & 0x100 == 0
            switch VhostRequestCode(rawValue: code)! {
            case .setVringKick: request = .setVringKick(index: index, hasFD: hasFD)
            case .setVringCall: request = .setVringCall(index: index, hasFD: hasFD)
            default: request = .setVringErr(index: index, hasFD: hasFD)
            }
        case .sendRARP?:
            if let e = need(8) { return .failure(e) }
            var raw: UInt64 = 0
            for i in 0..<6 { raw = raw << 8 | UInt64(payload[i]) }
            request = .sendRARP(MACAddress(rawValue: raw))
        }
        let expected = request.expectedFDs
        if expected >= 0 && expected != fdCount { return .failure(.fdCount(request: code, expected: expected, got: fdCount)) }
        return .success(request)
    }

    /// A reply message: header (version 1, reply flag) and payload.
    public static func reply(to request: UInt32, payload: [UInt8] = []) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(VhostMessageHeader.size + payload.count)
        out.appendLE32(request)
        out.appendLE32(VhostMessageHeader.version | VhostMessageHeader.replyFlag)
        out.appendLE32(UInt32(payload.count))
        return out + payload
    }

    /// A reply carrying one u64 (features, queue count, status, REPLY_ACK's 0 = success).
    public static func reply(to request: UInt32, u64 value: UInt64) -> [UInt8] {
        var p: [UInt8] = []
        p.appendLE64(value)
        return reply(to: request, payload: p)
    }

    /// A reply carrying a vring state (index u32, num u32): GET_VRING_BASE.
    public static func reply(to request: UInt32, index: Int, num: Int) -> [UInt8] {
        var p: [UInt8] = []
        p.appendLE32(UInt32(truncatingIfNeeded: index))
        p.appendLE32(UInt32(truncatingIfNeeded: num))
        return reply(to: request, payload: p)
    }

    /// A request message (what a frontend sends: the tests' fake frontend and the fuzz seeds).
    public static func request(_ code: UInt32, flags: UInt32 = VhostMessageHeader.version, payload: [UInt8] = []) -> [UInt8] {
        var out: [UInt8] = []
        out.appendLE32(code)
        out.appendLE32(flags)
        out.appendLE32(UInt32(payload.count))
        return out + payload
    }
}

extension UnsafeRawBufferPointer {
    @inline(__always) func le32(_ o: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    @inline(__always) func le64(_ o: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
}

extension Array where Element == UInt8 {
    /// Appends `v` little-endian.
    mutating func appendLE32(_ v: UInt32) { for i in 0..<4 { append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    /// Appends `v` little-endian.
    mutating func appendLE64(_ v: UInt64) { for i in 0..<8 { append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
}
