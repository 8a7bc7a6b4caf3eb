import CPcap

/// A compiled tcpdump filter expression (`arp`, `vlan 10`, `ether src 02:00:00:00:00:01`)
/// run against Ethernet frames in memory.
///
/// libpcap is the filter engine: `pcap_open_dead(DLT_EN10MB)` gives a handle with no
/// device (no capabilities needed), `pcap_compile` turns the expression into a BPF program,
/// and `pcap_offline_filter` runs it. VLAN tags are matched in the frame bytes, as they are
/// on the switch (the kernel's tag-stripping special case only applies to live sockets).
///
/// Immutable after init and `pcap_offline_filter` only reads the program, so one filter may
/// be used from several threads.
public final class BPFFilter: @unchecked Sendable {
    /// The expression as given.
    public let expression: String
    private let handle: OpaquePointer
    private var program = bpf_program()

    /// Compiles `expression` (optimized, netmask unknown) for Ethernet frames of at most
    /// `snapLength` bytes. Throws `CaptureError` with libpcap's reason, e.g.
    /// "bad filter 'tcp port': syntax error".
    public init(_ expression: String, snapLength: Int32 = 262144) throws {
        guard let handle = pcap_open_dead(DLT_EN10MB, snapLength) else {
            throw CaptureError("bad filter '\(expression)': pcap_open_dead failed")
        }
        self.expression = expression
        self.handle = handle
        guard pcap_compile(handle, &program, expression, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
            // Every stored property is set, so deinit runs and closes the handle; the
            // failed compile left no instructions for pcap_freecode to free.
            // libpcap ≥ 1.10 prefixes parse errors with "can't parse filter expression: ",
            // which "bad filter" already says.
            let prefix = "can't parse filter expression: "
            var reason = String(cString: pcap_geterr(handle))
            if reason.hasPrefix(prefix) { reason.removeFirst(prefix.count) }
            throw CaptureError("bad filter '\(expression)': \(reason)")
        }
    }

    deinit {
        pcap_freecode(&program)
        pcap_close(handle)
    }

    /// Whether the filter accepts `frame`, whose length on the wire was `wireLength`
    /// (`frame` may be a truncated capture of it).
    public func matches(_ frame: UnsafeRawBufferPointer, wireLength: Int) -> Bool {
        guard let base = frame.baseAddress else { return false }
        var header = pcap_pkthdr()
        header.caplen = UInt32(clamping: frame.count)
        header.len = UInt32(clamping: max(wireLength, frame.count))
        return withUnsafePointer(to: &program) { prog in
            pcap_offline_filter(prog, &header, base.assumingMemoryBound(to: UInt8.self)) != 0
        }
    }

    /// Whether the filter accepts `frame`, taken to be the whole frame.
    public func matches(_ frame: [UInt8]) -> Bool {
        frame.withUnsafeBytes { matches($0, wireLength: $0.count) }
    }
}
