/// A failure of the runtime, with a message meant for the admin.
///
/// In a file of its own (standard library only): the control-request fuzzer
/// (Scripts/fuzz.sh) compiles it with Reports.swift and Trace.swift, without the rest of
/// Runtime.
public struct RuntimeError: Error, CustomStringConvertible {
    public var description: String
    public init(_ message: String) { description = message }
}
