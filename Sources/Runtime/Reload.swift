import Core
import Foundation
import Model
import Netlink
import Topology
#if canImport(Glibc)
import Glibc  // types and constants (iovec, errno values, signals); calls go through LinuxIO
#endif

/// The reply to `reload`: what changed (names, in file order).
public struct ReloadReport: Codable, Equatable {
    public var name: String
    public var file: String
    /// One line: `guests +c -d ~e; switches ~sw0`, or `no changes`.
    public var summary: String
    public var guestsAdded: [String]
    public var guestsRemoved: [String]
    public var guestsChanged: [String]
    public var switchesAdded: [String]
    public var switchesRemoved: [String]
    public var switchesChanged: [String]

    init(name: String, file: String, diff d: TopologyDiff) {
        self.name = name; self.file = file; summary = d.summary
        guestsAdded = d.guestsAdded; guestsRemoved = d.guestsRemoved; guestsChanged = d.guestsChanged
        switchesAdded = d.switchesAdded; switchesRemoved = d.switchesRemoved; switchesChanged = d.switchesChanged
    }
}

extension Fabric {
    /// `{"command":"reload","file":"/abs/path"}`.
    func reload(_ req: ControlRequest) throws -> ReloadReport {
        guard let file = req.file, !file.isEmpty else { throw RuntimeError("reload needs a file") }
        return try reload(path: file)
    }

    /// Applies the topology in `path` to the running instance as a diff (live reload),
    /// through the same path as `up` (`apply`, Build.swift): guests (netns and QEMU),
    /// switches, uplinks and teams are added, removed and changed; untouched ports keep
    /// forwarding. Nothing changes unless the file is valid, keeps the topology's name, and
    /// what it adds passes the host checks of `up`.
    public func reload(path: String) throws -> ReloadReport {
        reloading.lock(); defer { reloading.unlock() }
        guard datapath != nil, !isStopping else { throw RuntimeError("topology '\(topology.name)' is not forwarding") }
        let new: Topology
        do { new = try TopologyLoader.load(path: path) } catch let e as TopologyErrors {
            throw RuntimeError(e.description)
        }
        let applied = try apply(new, file: path)
        let report = ReloadReport(name: new.name, file: path, diff: applied.diff)
        if !applied.diff.isEmpty { log("reloaded from \(path): \(applied.diff.summary)") }
        if !applied.failures.isEmpty {
            throw RuntimeError("reload applied in part (\(applied.diff.summary)); failed: " + applied.failures.joined(separator: "; "))
        }
        return report
    }
}
