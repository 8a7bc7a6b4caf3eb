import Core
import Foundation
import Model
#if canImport(Glibc)
import Glibc
#endif

/// `trace` and `capture`: the control-socket side of packet-capture debugging.
extension Fabric {
    /// The switch a request names, or the only one.
    func resolveSwitch(_ name: String?) throws -> Int {
        if let n = name {
            guard let i = plans.firstIndex(where: { $0.name == n }) else {
                throw RuntimeError("no switch named '\(n)' (switches: \(plans.map(\.name).joined(separator: ", ")))")
            }
            return i
        }
        guard plans.count == 1 else { throw RuntimeError("several switches (\(plans.map(\.name).joined(separator: ", "))): pass --switch") }
        return 0
    }

    func portIndex(_ name: String, in plan: SwitchPlan) throws -> Int {
        guard let i = plan.portIndex(named: name) else {
            throw RuntimeError("switch '\(plan.name)' has no port '\(name)' (ports: \(plan.ports.map(\.name).joined(separator: ", ")))")
        }
        return i
    }

    func parseVLAN(_ text: String?) throws -> VLANID? {
        guard let v = text else { return nil }
        if v == "none" { return .untagged }
        guard let n = Int(v), let id = VLANID(checking: n) else { throw RuntimeError("bad VLAN '\(v)': expected 1..4094 or none") }
        return id
    }

    /// Runs the datapath's own `decide` on the given frames, against the live MAC table,
    /// under the batch lock; nothing is learned or sent.
    func trace(_ req: ControlRequest) throws -> TraceReport {
        let s = try resolveSwitch(req.switch)
        let plan = plans[s]
        guard let portName = req.port else { throw RuntimeError("trace needs an ingress port (--in PORT)") }
        let inPort = try portIndex(portName, in: plan)
        let frames = try (req.frames ?? []).map { hex -> [UInt8] in
            guard let b = [UInt8](hexString: hex) else { throw RuntimeError("trace: frame is not hex") }
            return b
        }
        guard let dp = datapath else { throw RuntimeError("not forwarding") }
        let now = dp.now()
        // Trace runs the datapath's own decision against the live state, under the lock.
        // (It allocates its report there: a request bounded by the frames it carries.)
        let traces = try dp.withLock { lock in
            // A reload may have replaced the switches since `plans` was read.
            let list = lock.switches
            guard s < list.count, list[s].plan.name == plan.name, list[s].plan.ports == plan.ports else {
                throw RuntimeError("the topology was reloaded during the trace; run it again")
            }
            // Every switch's live state: a frame leaving by a link port is followed into the
            // switch at the other end (LinkTrace.swift).
            let traced = list.map { TracedSwitch(plan: $0.plan, context: $0.context(now: now, lock)) }
            return frames.map { traceFrame($0, inPort: inPort, switchIndex: s, switches: traced) }
        }
        return TraceReport(switch: plan.name, inPort: portName, frames: traces)
    }

    /// Streams captured frames to the client until it hangs up or the instance stops.
    ///
    /// Wire format after the JSON header line (`CaptureHeader`), little-endian records:
    /// `u32 captured length, u32 interface index, u64 timestamp ns, u32 original length,
    ///  u8 point (1 in, 2 out), u8 drop reason (255 none), u16 reserved, u64 frames lost so far`,
    /// then the frame bytes.
    func streamCapture(_ req: ControlRequest, fd: Int32) throws -> Data? {
        let s = try resolveSwitch(req.switch)
        let plan = plans[s]
        var selected = Array(repeating: false, count: plan.ports.count)
        if let names = req.port {
            for n in names.split(separator: ",") { selected[try portIndex(String(n), in: plan)] = true }
        } else if let g = req.portGroup {
            let members = plan.ports.indices.filter { plan.ports[$0].portGroup == g }
            guard !members.isEmpty else { throw RuntimeError("switch '\(plan.name)' has no port in port group '\(g)'") }
            for i in members { selected[i] = true }
        } else {
            selected = Array(repeating: true, count: plan.ports.count)
        }
        let direction = req.direction ?? "both"
        guard ["in", "out", "both"].contains(direction) else { throw RuntimeError("bad direction '\(direction)': in, out or both") }
        let selection = CaptureSelection(switchIndex: s, ports: selected, vlan: try parseVLAN(req.vlan),
                                         ingress: direction != "out", egress: direction != "in", drops: req.drops ?? false)
        guard let dp = datapath else { throw RuntimeError("not forwarding") }

        // Interfaces: the selected ports, in port order; records carry their index here.
        let chosen = plan.ports.indices.filter { selected[$0] }
        var interfaceOf = Array(repeating: UInt32(0), count: plan.ports.count)
        for (i, p) in chosen.enumerated() { interfaceOf[p] = UInt32(i) }
        let header = CaptureHeader(switch: plan.name, interfaces: chosen.map {
            .init(name: plan.ports[$0].name, description: "port group \(plan.ports[$0].portGroup), \(plan.ports[$0].mode)")
        })
        var line = try JSON.encoder().encode(header)
        line.append(UInt8(ascii: "\n"))
        guard sendAll(fd, line) else { return nil }

        let session = CaptureSession(selection: selection)
        dp.addCapture(session)
        defer { dp.removeCapture(session) }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while !isStopping {
            let ready = poll(&pfd, 1, 20)
            if ready > 0 {
                // The client never sends after its request: readable means it hung up.
                var b: UInt8 = 0
                if recv(fd, &b, 1, Int32(MSG_DONTWAIT)) <= 0 { break }
            }
            let (records, lost, fed) = dp.withLock { lock in (session.drain(), session.lost, lock.feeds(session)) }
            // A reload that changed this switch's ports ended the session.
            guard !records.isEmpty else { if fed { continue } else { break } }
            var out = Data()
            for r in records {
                out.appendLE(UInt32(r.bytes.count)); out.appendLE(interfaceOf[r.port]); out.appendLE(r.timestampNanoseconds)
                out.appendLE(UInt32(r.originalLength)); out.append(r.point.rawValue); out.append(r.reason?.rawValue ?? 255)
                out.appendLE(UInt16(0)); out.appendLE(lost)
                out.append(contentsOf: r.bytes)
            }
            if !sendAll(fd, out) { break }
        }
        return nil
    }
}

/// Sends everything or reports failure (client gone, or too slow for the 2 s send timeout).
func sendAll(_ fd: Int32, _ data: Data) -> Bool {
    data.withUnsafeBytes { raw in
        var off = 0
        while off < raw.count {
            let n = send(fd, raw.baseAddress! + off, raw.count - off, Int32(MSG_NOSIGNAL))
            if n <= 0 { if n < 0 && errno == EINTR { continue }; return false }
            off += n
        }
        return true
    }
}

extension Data {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}
