// Capture: the I/O layer for frames at rest and in flight to analysis tools.
//
// - `Pcapng` / `PcapngStreamWriter`: our own pcapng encoder (libpcap only writes classic
//   pcap, which has no per-port interface blocks, direction flags or comments).
// - `BPFFilter`: tcpdump filter expressions, compiled and run by libpcap.
// - `CaptureFile`: reads classic pcap and pcapng files through libpcap.
//
// This module moves bytes and never decides: what to capture, and why a frame was
// dropped, come from the caller.

/// A capture-layer failure with a message fit to show a user as is, e.g.
/// "bad filter 'tcp port': syntax error" or "write pcapng to fd 1: Broken pipe".
public struct CaptureError: Error, CustomStringConvertible, Equatable {
    /// The whole message: what was attempted, on what, and why it failed.
    public var message: String

    /// Creates an error with `message`.
    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
