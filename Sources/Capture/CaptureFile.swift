import CPcap

/// One frame read from a capture file.
public struct CapturedFrame: Sendable, Equatable {
    /// The stored bytes (possibly truncated to the file's snap length).
    public var bytes: [UInt8]
    /// The frame's length on the wire.
    public var originalLength: Int
    /// Capture time in nanoseconds since the Unix epoch.
    public var timestampNanoseconds: UInt64

    /// Creates a frame record.
    public init(bytes: [UInt8], originalLength: Int, timestampNanoseconds: UInt64) {
        self.bytes = bytes
        self.originalLength = originalLength
        self.timestampNanoseconds = timestampNanoseconds
    }
}

/// Reads capture files for `tapestry trace --pcap FILE` and for tests.
public enum CaptureFile {
    /// The first `limit` frames of the classic pcap or pcapng file at `path`, in file order.
    ///
    /// Wraps `pcap_open_offline_with_tstamp_precision(…, PCAP_TSTAMP_PRECISION_NANO, …)`
    /// and `pcap_next_ex`, so microsecond files come back scaled to nanoseconds. Only
    /// Ethernet (LINKTYPE_ETHERNET) files are accepted; anything else is an error naming
    /// the link type. Needs read permission on the file, nothing more.
    public static func read(path: String, limit: Int = .max) throws -> [CapturedFrame] {
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let handle = pcap_open_offline_with_tstamp_precision(
            path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf) else {
            throw CaptureError("read \(path): \(String(cString: errbuf))")
        }
        defer { pcap_close(handle) }

        let linkType = pcap_datalink(handle)
        guard linkType == DLT_EN10MB else {
            let name = pcap_datalink_val_to_name(linkType).map { String(cString: $0) } ?? "unknown"
            throw CaptureError("read \(path): link type \(name) (\(linkType)) is not Ethernet (EN10MB)")
        }

        var frames: [CapturedFrame] = []
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        while frames.count < limit {
            let r = pcap_next_ex(handle, &header, &data)
            if r == 1, let h = header?.pointee, let d = data {
                frames.append(CapturedFrame(
                    bytes: Array(UnsafeBufferPointer(start: d, count: Int(h.caplen))),
                    originalLength: Int(h.len),
                    // With nanosecond precision tv_usec holds nanoseconds. A file may claim a
                    // time before 1970 (the fields are signed): clamp to the epoch instead
                    // of trapping (found by fuzzing, see CaptureFuzzRegressionTests).
                    timestampNanoseconds: UInt64(clamping: h.ts.tv_sec) &* 1_000_000_000 &+ UInt64(clamping: h.ts.tv_usec)))
            } else if r == PCAP_ERROR_BREAK {   // -2: end of file
                break
            } else {
                throw CaptureError("read \(path): \(String(cString: pcap_geterr(handle)))")
            }
        }
        return frames
    }
}
