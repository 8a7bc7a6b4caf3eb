/// The rules every name in a topology file follows, as plain functions, so the command line
/// checks `--name`, `--switch`, `--port`… exactly as the loader checks the file (a name that
/// could not appear in a file is refused before anything is read or touched).
///
/// Each check returns nil when the text is valid, else the error message (without a
/// location; the loader adds `file:line:column`, the command line names the option).
public enum NameRules {
    /// What kind of name, with its length limit and first-character rule.
    public struct Kind: Sendable, Equatable {
        /// How messages call it, e.g. "topology name".
        public var what: String
        public var maxLength: Int
        /// A lowercase letter first (otherwise a lowercase letter or digit).
        public var letterFirst: Bool
        public init(what: String, maxLength: Int, letterFirst: Bool = false) {
            self.what = what; self.maxLength = maxLength; self.letterFirst = letterFirst
        }
        /// `name:` of a topology: at most 12 characters, a letter first (it prefixes the
        /// instance's files and derived link names).
        public static let topology = Kind(what: "topology name", maxLength: 12, letterFirst: true)
        /// A switch (a key of `switches:`).
        public static let `switch` = Kind(what: "switch name", maxLength: 15)
        /// A guest (a key of `guests:`): also its network namespace's name.
        public static let guest = Kind(what: "guest name", maxLength: 15)
        /// A port group (a key of `port-groups:`).
        public static let portGroup = Kind(what: "port group name", maxLength: 31)
        /// A mirror's `name:`.
        public static let mirror = Kind(what: "mirror name", maxLength: 31)
        /// A host of a multi-host topology (the part after `@` in an instance's identity).
        /// The same rule as a guest name: it may name tunnel ports and files.
        public static let host = Kind(what: "host name", maxLength: 15)
    }

    /// `[a-z0-9][a-z0-9-]*` (a letter first when `kind.letterFirst`), at most
    /// `kind.maxLength` bytes.
    public static func problem(with s: String, as kind: Kind) -> String? {
        let bytes = Array(s.utf8)
        func lowerOrDigit(_ b: UInt8) -> Bool { (97...122).contains(b) || (48...57).contains(b) }
        let firstOK = bytes.first.map { kind.letterFirst ? (97...122).contains($0) : lowerOrDigit($0) } ?? false
        guard firstOK, bytes.allSatisfy({ lowerOrDigit($0) || $0 == 45 }) else {
            let start = kind.letterFirst ? "a lowercase letter" : "a lowercase letter or digit"
            return "invalid \(kind.what) '\(s)': use lowercase letters, digits and '-', starting with \(start)"
        }
        guard bytes.count <= kind.maxLength else {
            return "\(kind.what) '\(s)' is too long: \(bytes.count) characters, at most \(kind.maxLength)"
        }
        return nil
    }

    /// A kernel interface name (an uplink NIC): at most `IFNAMSIZ` - 1 = 15 bytes, no `/`,
    /// `:`, NUL or whitespace, and not `.` or `..` (netdevice(7), dev_valid_name()).
    public static func interfaceNameProblem(_ s: String) -> String? {
        let bytes = Array(s.utf8)
        if bytes.isEmpty { return "invalid interface name '': empty" }
        if bytes.count > 15 { return "invalid interface name '\(s)': \(bytes.count) bytes, at most 15" }
        if s == "." || s == ".." || s.contains(where: { $0 == "/" || $0 == ":" || $0 == "\0" || $0.isWhitespace }) {
            return "invalid interface name '\(s)': no '/', ':' or whitespace, and not '.' or '..'"
        }
        return nil
    }

    /// A switch port's name: `GUEST.ethN` for a guest NIC (N its index in `nics`), or an
    /// uplink NIC's interface name.
    public static func portNameProblem(_ s: String) -> String? {
        if let dot = s.lastIndex(of: "."), s[s.index(after: dot)...].hasPrefix("eth") {
            let guest = String(s[..<dot]), index = s[s.index(dot, offsetBy: 4)...]
            if !index.isEmpty, index.allSatisfy(\.isASCII), index.allSatisfy(\.isNumber), index.count <= 3,
               problem(with: guest, as: .guest) == nil {
                return nil
            }
        }
        if interfaceNameProblem(s) == nil, !s.contains(".eth") { return nil }
        return "invalid port name '\(s)': expected GUEST.ethN (e.g. web1.eth0) or an uplink NIC's name"
    }
}
