import Core
import Foundation
import LinuxIO
import Model
import Netlink
import Observability
import Topology

/// The switch's LLDP agent (IEEE 802.1AB) on its uplinks: it reads what the physical switch
/// says (`lldp: listen | both`), advertises us (`advertise | both`), and answers
/// `tapestry neighbors`.
///
/// ```
///  datapath: decide → .local(.lldp) on any team member ─▶ LLDPInbox (16 slots, per switch)
///  tick (200 ms, this thread):
///    per switch: datapath lock ─▶ move the inbox's frames into our buffer ─▶ unlock
///    parse each (LLDPDU.parse, allocates) ─▶ LLDPNeighborTable (MSAP, TTL; bounded)
///    expire neighbours whose TTL ran out
///    per advertising uplink, when due (every 30 s, TTL 121 s): send our LLDPDU by its NIC
///  stop (down): a TTL-0 LLDPDU on each advertising uplink ("forget me", §9.2.7.7.3)
/// ```
/// The datapath lock is held only to copy at most 16 frames (no allocation, no system
/// call); parsing, the table and the sends happen outside it. Frames from an uplink whose
/// mode does not listen are still consumed by the switch (never forwarded), and counted as
/// `ignored`. What we advertise: Chassis ID = our chassis name (subtype "locally assigned"),
/// System Name = the same, Port ID = the NIC's name (subtype "interface name"), a Port
/// Description naming the switch, a System Description naming Tapestry, the topology and
/// the kernel, capabilities "bridge" (see `LLDPDU.tapestry`).
///
/// Threads: one thread; `configure`, `report` and `stop` come from control threads and
/// meet it under `lock`. Sends happen under `lock` too, so once `configure` returns no
/// send uses a port it removed (the caller may close it).
public final class LLDPAgent {
    /// One uplink NIC and how it takes part in LLDP.
    public struct Uplink {
        public var switchName: String
        public var nic: String
        public var mode: Observability.LLDPMode
        /// The NIC's port (an AF_PACKET `PacketPort`): our LLDPDUs are written through it.
        public var port: PortIO
        /// The source MAC of our LLDPDUs; nil: the NIC's own, read by netlink.
        public var mac: MACAddress?
        public init(switchName: String, nic: String, mode: Observability.LLDPMode, port: PortIO, mac: MACAddress? = nil) {
            self.switchName = switchName; self.nic = nic; self.mode = mode; self.port = port; self.mac = mac
        }
    }

    /// What happened on one uplink.
    struct Counters {
        var received: UInt64 = 0
        var ignored: UInt64 = 0
        var discarded: UInt64 = 0
        var sent: UInt64 = 0
        var sendFailures: UInt64 = 0
        var lastDiscard: String?
    }

    private struct Member {
        var uplink: Uplink
        var mac: MACAddress
        var schedule: LLDPTransmitSchedule
    }

    /// Milliseconds between ticks.
    static let tickMilliseconds = 200

    /// Our Chassis ID and System Name.
    public let chassis: String
    private let topologyName: String
    private let systemDescription: String
    private let datapath: Datapath
    private let log: (String) -> Void
    private let lock = NSLock()
    private var members: [Member] = []
    private var table = LLDPNeighborTable()
    private var counters: [String: Counters] = [:]
    private var thread: Thread?
    private let stopSignal = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private let transmitInterval: UInt64
    /// Seconds our neighbours keep what we said: msgTxInterval × msgTxHold (4) + 1
    /// (802.1AB §9.2.5.22; 121 s by default).
    private var ttl: UInt16 { UInt16(clamping: transmitInterval * 4 / 1000 + 1) }
    /// The drain buffer: one inbox's worth of frames (allocated once).
    private let area = UnsafeMutableRawPointer.allocate(byteCount: LLDPInbox.capacity * LLDPInbox.slotBytes, alignment: 64)
    private let lengths = UnsafeMutablePointer<Int>.allocate(capacity: LLDPInbox.capacity)
    private let ports = UnsafeMutablePointer<Int>.allocate(capacity: LLDPInbox.capacity)

    /// - Parameters:
    ///   - chassis: our chassis name (`LLDPAgent.chassisName(for:)`).
    ///   - transmitInterval: milliseconds between our LLDPDUs (802.1AB msgTxInterval, 30 s).
    public init(datapath: Datapath, topologyName: String, chassis: String, transmitInterval: UInt64 = 30_000, log: @escaping (String) -> Void) {
        self.datapath = datapath
        self.topologyName = topologyName
        self.chassis = chassis
        self.transmitInterval = transmitInterval
        systemDescription = "Tapestry virtual switch, topology \(topologyName), Linux \(HostIdentity.kernelRelease())"
        self.log = log
    }

    deinit { area.deallocate(); lengths.deallocate(); ports.deallocate() }

    /// Our chassis name for a topology: the `hosts:` name of this machine when the topology
    /// has hosts (the one whose underlay address is local, `Topology.localHost`), else the
    /// OS host name.
    public static func chassisName(for t: Topology) -> String {
        if !t.hosts.isEmpty {
            let local = Set(HostIdentity.localAddresses().compactMap { IPAddress($0) })
            if let name = try? t.localHost(among: local) { return name }
        }
        return HostIdentity.hostName()
    }

    /// The topology's uplinks as the agent sees them: per NIC its switch and mode, with the
    /// open port from `ports` (by NIC name); NICs without a port are left out.
    static func uplinks(of t: Topology, ports: [String: PortIO]) -> [Uplink] {
        t.switches.flatMap { s -> [Uplink] in
            guard let u = s.uplinks else { return [] }
            let mode = Observability.LLDPMode(rawValue: u.lldp.rawValue) ?? .listen
            return u.nics.compactMap { nic in ports[nic].map { Uplink(switchName: s.name, nic: nic, mode: mode, port: $0) } }
        }
    }

    /// Makes `uplinks` the agent's. Advertising uplinks that go away (or stop advertising)
    /// say goodbye first (TTL 0); neighbours of uplinks that go away are forgotten. New
    /// advertising uplinks send at once.
    public func configure(_ uplinks: [Uplink]) {
        // Each NIC's own MAC is the source of our LLDPDUs (802.1AB §7.1).
        var macs: [String: MACAddress] = [:]
        for u in uplinks { if let m = u.mac { macs[u.nic] = m } }
        if uplinks.contains(where: { $0.mac == nil }), let nl = try? NetlinkSocket() {
            for u in uplinks where u.mac == nil {
                if let attrs = try? nl.linkAttributes(named: u.nic), let mac = attrs.mac { macs[u.nic] = mac }
            }
        }
        lock.lock(); defer { lock.unlock() }
        for m in members where m.uplink.mode.transmits {
            let still = uplinks.first { $0.nic == m.uplink.nic && $0.port === m.uplink.port }
            if still?.mode.transmits != true { sendLocked(m, ttl: 0) }
        }
        for m in members where !uplinks.contains(where: { $0.nic == m.uplink.nic }) {
            table.removeAll(on: m.uplink.nic)
            counters[m.uplink.nic] = nil
        }
        let old = members
        members = uplinks.map { u in
            if let was = old.first(where: { $0.uplink.nic == u.nic && $0.uplink.port === u.port && $0.uplink.mode.transmits == u.mode.transmits }) {
                return Member(uplink: u, mac: macs[u.nic] ?? was.mac, schedule: was.schedule)
            }
            return Member(uplink: u, mac: macs[u.nic] ?? .zero, schedule: LLDPTransmitSchedule(interval: transmitInterval))
        }
        for m in members where !old.contains(where: { $0.uplink.nic == m.uplink.nic }) {
            log("LLDP on uplink \(m.uplink.nic) of switch \(m.uplink.switchName): \(m.uplink.mode.rawValue)"
                + (m.uplink.mode.transmits ? " (advertising chassis '\(chassis)')" : ""))
        }
    }

    /// Starts the thread (`tapestry-lldp`).
    public func start() {
        guard thread == nil else { return }
        let t = Thread { [unowned self] in
            ThreadControl.setName("tapestry-lldp")
            repeat { self.tick() } while self.stopSignal.wait(timeout: .now() + .milliseconds(LLDPAgent.tickMilliseconds)) == .timedOut
            self.done.signal()
        }
        thread = t
        t.start()
    }

    /// Stops the thread and sends a shutdown LLDPDU (TTL 0) on every advertising uplink, so
    /// the physical switch forgets us at once. Call before the uplink ports close. Idempotent.
    public func stop() {
        if thread != nil {
            stopSignal.signal()
            done.wait()
            thread = nil
        }
        lock.lock(); defer { lock.unlock() }
        for m in members where m.uplink.mode.transmits { sendLocked(m, ttl: 0) }
        members = []
    }

    /// One round (the thread's tick; tests call it directly).
    func tick() {
        let now = UInt64(monotonicNanoseconds() / 1_000_000)
        drain(now: now)
        lock.lock(); defer { lock.unlock() }
        table.expire(now: now)
        for i in members.indices where members[i].uplink.mode.transmits {
            if members[i].schedule.due(now: now) { sendLocked(members[i], ttl: ttl) }
        }
    }

    /// Moves every switch's LLDP frames out of the datapath and records them.
    private func drain(now: UInt64) {
        let names: [String] = datapath.withLock { held in held.switches.compactMap { ($0.lldpInbox?.count ?? 0) > 0 ? $0.plan.name : nil } }
        for name in names {
            let (n, plan): (Int, SwitchPlan?) = datapath.withLock { held in
                guard let sw = held.switches.first(where: { $0.plan.name == name }), let inbox = sw.lldpInbox else { return (0, nil) }
                return (inbox.take(into: area, lengths: lengths, ports: ports), sw.plan)
            }
            guard let plan, n > 0 else { continue }
            var heard: [(String, Result<LLDPDU, LLDPParseError>)] = []
            for i in 0..<n {
                guard ports[i] < plan.ports.count else { continue }
                let frame = UnsafeRawBufferPointer(start: area + i * LLDPInbox.slotBytes, count: lengths[i])
                heard.append((plan.ports[ports[i]].name, LLDP.parse(frame: frame)))
            }
            lock.lock()
            for (nic, result) in heard {
                var c = counters[nic] ?? Counters()
                switch result {
                case .failure(let e):
                    c.discarded += 1
                    c.lastDiscard = e.description
                case .success(let du):
                    if members.first(where: { $0.uplink.nic == nic })?.uplink.mode.receives == true {
                        c.received += 1
                        let update = table.receive(du, on: nic, now: now)
                        if update == .added || update == .removed {
                            log("LLDP on uplink \(nic): " + (update == .added ? "neighbour" : "neighbour left:")
                                + " chassis \(du.chassisID) port \(du.portID)" + (du.systemName.map { " (\($0))" } ?? ""))
                        }
                    } else {
                        c.ignored += 1
                    }
                }
                counters[nic] = c
            }
            lock.unlock()
        }
    }

    /// Sends our LLDPDU with `ttl` by `m`'s NIC. Under `lock`.
    private func sendLocked(_ m: Member, ttl: UInt16) {
        let du = LLDPDU.tapestry(hostName: chassis, nic: m.uplink.nic, systemDescription: systemDescription, ttl: ttl,
                                 portDescription: "uplink of switch \(m.uplink.switchName), topology \(topologyName)")
        var c = counters[m.uplink.nic] ?? Counters()
        // With the port's (zeroed) virtio-net header, as `PacketPort.send` does.
        let io = m.uplink.port
        var bytes = [UInt8](repeating: 0, count: io.txVNetHeaderSize) + LLDP.frame(from: m.mac, du)
        let result = bytes.withUnsafeMutableBytes { raw -> IOResult in
            var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
            return io.writev(queue: 0, &iov, count: 1)
        }
        if case .bytes = result { c.sent += 1 } else { c.sendFailures += 1 }
        counters[m.uplink.nic] = c
    }

    /// `tapestry neighbors`: per uplink (of `switchName`, or all), its mode, counters and
    /// what its neighbours said.
    public func report(switch switchName: String? = nil) -> NeighborsReport {
        let now = UInt64(monotonicNanoseconds() / 1_000_000)
        lock.lock(); defer { lock.unlock() }
        let rows = members.filter { switchName == nil || $0.uplink.switchName == switchName }.map { m -> NeighborsReport.Uplink in
            let c = counters[m.uplink.nic] ?? Counters()
            return NeighborsReport.Uplink(switch: m.uplink.switchName, uplink: m.uplink.nic, lldp: m.uplink.mode.rawValue,
                                          received: c.received, ignored: c.ignored, discarded: c.discarded, lastDiscard: c.lastDiscard,
                                          sent: c.sent, sendFailures: c.sendFailures,
                                          neighbors: table.neighbors(on: m.uplink.nic).map { LLDPNeighborRow($0, now: now) })
        }
        return NeighborsReport(chassis: chassis, uplinks: rows, tooManyNeighbors: table.tooManyNeighbors, ageouts: table.ageouts)
    }
}

/// The reply to `neighbors`: per uplink NIC, how it takes part in LLDP and what the
/// physical switch on the other end said (`LLDPNeighborRow`). JSON keys (snake_case):
/// `chassis` (what we advertise), `too_many_neighbors`, `ageouts`, `uplinks[]` {`switch`,
/// `uplink`, `lldp` (mode), `received`, `ignored`, `discarded`, `last_discard`, `sent`,
/// `send_failures`, `neighbors[]` {`uplink`, `chassis_id`, `chassis_id_type`, `port_id`,
/// `port_id_type`, `system_name`, `system_description`, `port_description`,
/// `management_addresses`, `port_vlan`, `capabilities`, `ttl_seconds`, `age_seconds`,
/// `expires_in_seconds`}}.
public struct NeighborsReport: Codable, Equatable {
    /// Our Chassis ID and System Name (the host name, or the `hosts:` name).
    public var chassis: String
    public var uplinks: [Uplink]
    /// New neighbours refused because the table was full (8 per uplink, 256 in all).
    public var tooManyNeighbors: UInt64
    /// Neighbours forgotten because their TTL ran out.
    public var ageouts: UInt64

    public struct Uplink: Codable, Equatable {
        public var `switch`: String
        /// The NIC's name.
        public var uplink: String
        /// `listen`, `advertise`, `both` or `off`.
        public var lldp: String
        /// LLDPDUs recorded (listening uplinks).
        public var received: UInt64
        /// LLDPDUs consumed but not recorded (the uplink does not listen).
        public var ignored: UInt64
        /// Frames that were not valid LLDPDUs (802.1AB §9.2.7.7.1), and the last reason.
        public var discarded: UInt64
        public var lastDiscard: String?
        /// Our LLDPDUs sent, and sends that failed.
        public var sent: UInt64
        public var sendFailures: UInt64
        public var neighbors: [LLDPNeighborRow]
    }
}

extension JSONDocuments {
    /// `tapestry neighbors --json`: every stored property of `NeighborsReport`, in
    /// snake_case, nil as `null` (by reflection, like `trace`).
    public static func neighbors(_ r: NeighborsReport) -> JSONValue {
        guard case .object(let fields) = JSONValue.reflecting(r) else { return document([:]) }
        return document(fields)
    }
}
