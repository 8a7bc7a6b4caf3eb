import Foundation
import Testing
import TestSupport
@testable import FabricStore

/// Records a service's callbacks with monotonic timestamps; thread-safe. `starts` succeed.
final class Recorder: @unchecked Sendable {
    struct Event: Equatable { var kind: String; var guests: [String]; var time: Double }
    private let lock = NSLock()
    private var events: [Event] = []
    private var lines: [String] = []
    let name: String
    init(_ name: String) { self.name = name }

    var callbacks: FabricCallbacks {
        FabricCallbacks(
            startGuest: { [self] g in add(Event(kind: "start", guests: [g], time: Deadline.now())); return true },
            stopGuests: { [self] gs, reason in
                add(Event(kind: reason == .isolation ? "power-off" : "stop", guests: gs, time: Deadline.now()))
            },
            log: { [self] line in lock.lock(); lines.append(line); lock.unlock(); print("[\(name)] \(line)") })
    }

    private func add(_ e: Event) { lock.lock(); events.append(e); lock.unlock() }
    var all: [Event] { lock.lock(); defer { lock.unlock() }; return events }
    func of(_ kind: String) -> [Event] { all.filter { $0.kind == kind } }
    var log: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}

enum ServiceFixture {
    /// Three hosts (4 CPUs / 1024 MiB each) and the guests given.
    static func spec(_ topology: String, guests: [FabricGuest], hash: String = Fixture.hash) -> FabricSpec {
        FabricSpec(topology: topology, topologyHash: hash,
                   hosts: (1...3).map { FabricHost(name: "h\($0)", underlay: "192.0.2.\($0)", cpus: 4, memoryMiB: 1024) },
                   guests: guests)
    }

    static func vm(_ name: String, on host: String, restart: FabricRestart = .onFailure) -> FabricGuest {
        FabricGuest(name: name, kind: .qemu, host: host, cpus: 1, memoryMiB: 256, restart: restart)
    }

    static func options(ttl: Int64 = 3, grace: Double = 2) -> FabricOptions {
        var o = FabricOptions()
        o.leaseTTL = ttl
        o.grace = grace
        return o
    }

    static func client(_ endpoints: [String], namespace: String? = nil) throws -> EtcdClient {
        try EtcdClient(EtcdConfiguration(endpoints: endpoints, attemptTimeout: 0.5, requestTimeout: 1.5, namespace: namespace))
    }

    /// Waits up to `timeout` seconds for `condition`, checking every 50 ms. Returns the
    /// seconds it took, or nil.
    static func wait(_ timeout: Double, _ condition: () -> Bool) -> Double? {
        let t0 = Deadline.now()
        while Deadline.now() - t0 < timeout {
            if condition() { return Deadline.now() - t0 }
            usleep(50_000)
        }
        return nil
    }
}

/// Every test that runs real etcd members, as one serialized suite: they do not compete
/// with each other for the two cores (lease TTLs of 3 s are tight on a loaded machine),
/// while the rest of the project's tests still run beside them.
@Suite(.serialized) enum EtcdSystemTests {}
