#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// A failed libnl request: what we asked, about what, and libnl's error code.
///
/// libnl reports `NLE_*` codes (its own numbering, described by `nl_geterror`), not errno;
/// mixing the two is how "Object not found" turns into "Interrupted system call". When the
/// failure came from a system call outside libnl (opening or entering a namespace),
/// `systemErrno` holds that errno as well.
public struct NetlinkError: Error, CustomStringConvertible, Equatable {
    /// The libnl call or step that failed, e.g. "rtnl_link_change".
    public var operation: String
    /// What it acted on, e.g. "link tap3 -> netns fd 7"; may be empty.
    public var subject: String
    /// The libnl error code (positive `NLE_*` value, e.g. `CNL_NLE_OBJ_NOTFOUND`).
    public var code: Int32
    /// The errno of a failed system call behind this error, if one was the cause.
    public var systemErrno: Int32?

    /// Creates an error from a libnl return value (negative codes are negated).
    public init(operation: String, subject: String, code: Int32, systemErrno: Int32? = nil) {
        self.operation = operation
        self.subject = subject
        self.code = code < 0 ? -code : code
        self.systemErrno = systemErrno
    }

    /// libnl's text for `code` (nl_geterror), e.g. "Object not found".
    public var reason: String { String(cString: nl_geterror(code)) }

    /// Whether libnl reports the object (link, address) as missing.
    public var isNotFound: Bool { code == CNL_NLE_OBJ_NOTFOUND }
    /// Whether libnl reports the object as already existing.
    public var isExists: Bool { code == CNL_NLE_EXIST }

    public var description: String {
        var text = subject.isEmpty ? operation : "\(operation) (\(subject))"
        text += ": \(reason) (NLE \(code))"
        if let e = systemErrno, e != 0 { text += ", \(String(cString: strerror(e))) (errno \(e))" }
        return text
    }
}

/// Turns a libnl return value into a thrown `NetlinkError` when negative.
@inline(__always)
@discardableResult
func check(_ result: Int32, _ operation: @autoclosure () -> String, _ subject: @autoclosure () -> String) throws -> Int32 {
    if result < 0 { throw NetlinkError(operation: operation(), subject: subject(), code: result) }
    return result
}
