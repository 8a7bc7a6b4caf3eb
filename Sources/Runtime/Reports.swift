import Foundation

/// Replies of the control socket. Keys are encoded in snake_case; they are a stable
/// interface (`--json`), documented in README.md.

public struct StatusReport: Codable, Equatable {
    public var name: String
    public var file: String
    public var pid: Int32
    public var uptimeSeconds: Int64
    public var switches: [SwitchSummary]
    public var guests: [GuestSummary]

    public struct SwitchSummary: Codable, Equatable {
        public var name: String
        public var mtu: Int
        public var ports: Int
        public var vlans: [String]
        public var macEntries: Int
        public var macLimit: Int
        public var agingSeconds: Int
    }
    public struct GuestSummary: Codable, Equatable {
        public var name: String
        public var kind: String
        public var namespace: String?
        public var nics: [NICSummary]
    }
    public struct NICSummary: Codable, Equatable {
        public var port: String
        public var interface: String
        public var mac: String
        public var ip: String?
    }
}

public struct PortsReport: Codable, Equatable {
    public var ports: [PortRow]
    public struct PortRow: Codable, Equatable {
        public var name: String
        public var `switch`: String
        public var portGroup: String
        public var kind: String
        public var vlanMode: String
        public var link: String
        public var macEntries: Int
        public var rxFrames: UInt64
        public var rxBytes: UInt64
        public var txFrames: UInt64
        public var txBytes: UInt64
        /// Drop counters by reason name (only reasons that occurred).
        public var drops: [String: UInt64]
    }
}

public struct FDBReport: Codable, Equatable {
    public var entries: [Entry]
    public struct Entry: Codable, Equatable {
        public var `switch`: String
        public var vlan: String
        public var mac: String
        public var port: String
        public var ageSeconds: Int64
        public var type: String
    }
}

/// A control request: one JSON object on one line.
public struct ControlRequest: Codable, Equatable {
    public var command: String
    public var `switch`: String?
    public var vlan: String?
    public init(command: String, switch sw: String? = nil, vlan: String? = nil) {
        self.command = command; self.switch = sw; self.vlan = vlan
    }
}

/// A control reply: `ok` plus either a report or an error message.
public struct ControlError: Codable, Equatable {
    public var error: String
}

public enum JSON {
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return e
    }
    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }
}
