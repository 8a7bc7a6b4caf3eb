import Model

/// Why a port of a running switch is down.
public enum PortDownReason: UInt8, Sendable, CustomStringConvertible {
    /// The port's kernel device disappeared: the TAP deleted inside its guest, the guest's
    /// namespace deleted, a VM's TAP netdev deleted (`device-gone`).
    case deviceGone = 1
    /// The device still exists but left its guest's network namespace (`device-moved`).
    case deviceMoved = 2
    /// The port's I/O failed persistently (`io-error`).
    case ioError = 3

    public var description: String {
        switch self {
        case .deviceGone: return "device-gone"
        case .deviceMoved: return "device-moved"
        case .ioError: return "io-error"
        }
    }
}

/// Which ports of a switch are down, and why. A down port gets no frame (the egress walk
/// skips it as if it were not a member of any VLAN), and sends none (the datapath stops
/// polling it). Changed under the datapath lock; read per frame only when some port is down.
public final class PortLinks {
    public let portCount: Int
    @usableFromInline let reasons: UnsafeMutablePointer<UInt8>
    /// Ports down right now.
    public private(set) var downCount = 0

    public init(portCount: Int) {
        self.portCount = portCount
        reasons = .allocate(capacity: max(1, portCount))
        reasons.initialize(repeating: 0, count: max(1, portCount))
    }
    deinit { reasons.deallocate() }

    /// Why `port` is down, or nil while it is up.
    @inlinable public func downReason(_ port: Int) -> PortDownReason? {
        port < portCount ? PortDownReason(rawValue: reasons[port]) : nil
    }
    @inlinable @inline(__always) public func isDown(_ port: Int) -> Bool { reasons[port] != 0 }

    /// Marks `port` down; returns false when it already was.
    @discardableResult
    public func setDown(_ port: Int, _ reason: PortDownReason) -> Bool {
        guard port < portCount, reasons[port] == 0 else { return false }
        reasons[port] = reason.rawValue
        downCount += 1
        return true
    }
}
