import Core
import Foundation
import LinuxIO
import Model

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

    /// The switch holding port `port`: `given` when named, else the only switch that has a
    /// port of that name (port names are unique within a topology, so `--switch` is needed
    /// only if a name is truly on several switches).
    func switchOf(port: String, given: String?) throws -> Int {
        if given != nil { return try resolveSwitch(given) }
        let holders = plans.indices.filter { plans[$0].portIndex(named: port) != nil }
        switch holders.count {
        case 1: return holders[0]
        case 0:
            throw RuntimeError("no switch has a port '\(port)' (ports: \(plans.flatMap { $0.ports.map(\.name) }.joined(separator: ", ")))")
        default:
            throw RuntimeError("port '\(port)' is on several switches (\(holders.map { plans[$0].name }.joined(separator: ", "))): pass --switch")
        }
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
        guard let portName = req.port else { throw RuntimeError("trace needs an ingress port (--in PORT)") }
        let s = try switchOf(port: portName, given: req.switch)
        let plan = plans[s]
        let inPort = try portIndex(portName, in: plan)
        var frames = try (req.frames ?? []).map { hex -> [UInt8] in
            guard let b = [UInt8](hexString: hex) else { throw RuntimeError("trace: frame is not hex") }
            return b
        }
        // A frame "from a tunnel" is in the tunnel's form (`TunnelPeer`): its outer 802.1Q
        // tag names the VNI's VLAN, so `vlan=V` means VNI BASE+V and an untagged frame
        // means VNI BASE (given a priority tag, VID 0, as the receive path does).
        let ingressTunnel = plan.ports[inPort].tunnel
        if ingressTunnel != nil { frames = frames.map(Fabric.tunnelForm) }
        guard let dp = datapath else { throw RuntimeError("not forwarding") }
        let traces = try Fabric.trace(frames, inPort: inPort, switchIndex: s, plan: plan, on: dp)
        return TraceReport(switch: plan.name, inPort: portName, frames: traces.map { explainTunnels($0, ingress: ingressTunnel, plan: plan) })
    }

    /// `frame` with an outer 802.1Q tag: as given when it has one, else with a priority tag
    /// (VID 0) after the MACs.
    static func tunnelForm(_ frame: [UInt8]) -> [UInt8] {
        guard frame.count >= 14 else { return frame }
        if frame[12] == 0x81 && frame[13] == 0x00 { return frame }
        return Array(frame[0..<12]) + [0x81, 0x00, 0x00, 0x00] + frame[12...]
    }

    /// Adds the tunnel steps to a trace: where a frame from a tunnel came from (VTEP, VNI,
    /// VLAN), and for each output to a tunnel the VNI and VTEP it is encapsulated for.
    func explainTunnels(_ t: TraceReport.FrameTrace, ingress: TunnelPeer?, plan: SwitchPlan) -> TraceReport.FrameTrace {
        var t = t
        if let peer = ingress {
            let vlan = t.steps.first { $0.stage == "vlan" }.flatMap { s -> UInt16? in
                guard s.detail.hasPrefix("VLAN ") else { return nil }
                let word = s.detail.dropFirst(5).prefix { $0 != " " }
                return word == "none" ? 0 : UInt16(word)
            }
            let vni = vlan.map { " VNI \(peer.vni(for: VLANID($0)))" } ?? ""
            t.steps.insert(.init(stage: "tunnel", detail: "decapsulated from VTEP \(Fabric.tunnelPeerText(peer)),\(vni) (VNI \(peer.vniBase) + VLAN)"), at: 0)
        }
        for e in t.egress {
            guard let p = plan.portIndex(named: e.port), let peer = plan.ports[p].tunnel else { continue }
            let vid: UInt16 = e.tag.hasPrefix("vlan ") ? UInt16(e.tag.dropFirst(5).prefix { $0 != " " }) ?? 0 : 0
            t.steps.append(.init(stage: "tunnel", detail: "\(e.port): encapsulated as VNI \(peer.vni(for: VLANID(vid))) to \(Fabric.tunnelPeerText(peer)) (split horizon: never back into a tunnel or to an uplink)"))
        }
        return t
    }

    /// Traces `frames` entering port `inPort` of switch `switchIndex` (whose plan the caller
    /// read as `plan`) against `dp`'s live state.
    ///
    /// Under the datapath lock, **one frame per hold**: a request may carry thousands of
    /// frames (up to the 64 KiB request line: about 2100 minimal ones), and tracing all of
    /// them in one hold kept every worker waiting for the whole request — 1.3 s under the
    /// control fuzzer's ASan build (`Fuzz/corpus/control/trace-largest`, the control
    /// fuzzing). Now a worker waits for one frame's trace at most
    /// (`RuntimeTests.TraceLockTests`). Each frame is traced as of the moment of its hold
    /// (the clock is read per frame); the trace allocates its report there, bounded by one
    /// frame.
    /// - Throws: `RuntimeError` when a reload replaced the switch's ports meanwhile.
    static func trace(_ frames: [[UInt8]], inPort: PortIndex, switchIndex s: Int, plan: SwitchPlan,
                      on dp: Datapath) throws -> [TraceReport.FrameTrace] {
        var traces: [TraceReport.FrameTrace] = []
        traces.reserveCapacity(frames.count)
        for frame in frames {
            let now = dp.now()
            traces.append(try dp.withLock { lock in
                // A reload may have replaced the switches since `plan` was read.
                let list = lock.switches
                guard s < list.count, list[s].plan.isSame(plan) || (list[s].plan.name == plan.name && list[s].plan.ports == plan.ports) else {
                    throw RuntimeError("the topology was reloaded during the trace; run it again")
                }
                // Every switch's live state: a frame leaving by a link port is followed into
                // the switch at the other end (LinkTrace.swift).
                let traced = list.map { TracedSwitch(plan: $0.plan, context: $0.context(now: now, lock)) }
                return traceFrame(frame, inPort: inPort, switchIndex: s, switches: traced)
            })
        }
        return traces
    }

    /// Streams captured frames to the client until it hangs up or the instance stops.
    ///
    /// Wire format after the JSON header line (`CaptureHeader`), little-endian records:
    /// `u32 captured length, u32 interface index, u64 timestamp ns, u32 original length,
    ///  u8 point (1 in, 2 out), u8 drop reason (255 none), u16 reserved, u64 frames lost so far`,
    /// then the frame bytes.
    func streamCapture(_ req: ControlRequest, fd: Int32) throws -> Data? {
        let plans = self.plans
        let only = try req.switch.map { try resolveSwitch($0) }
        var selected = plans.map { Array(repeating: false, count: $0.ports.count) }
        if let names = req.port {
            for n in names.split(separator: ",").map(String.init) {
                let s = try switchOf(port: n, given: req.switch)
                selected[s][try portIndex(n, in: plans[s])] = true
            }
        } else if let g = req.portGroup {
            // A port group is per switch; without --switch, every switch's group of that name.
            for s in plans.indices where only == nil || only == s {
                for i in plans[s].ports.indices where plans[s].ports[i].portGroup == g { selected[s][i] = true }
            }
            guard selected.contains(where: { $0.contains(true) }) else {
                throw RuntimeError("no port in port group '\(g)'" + (only.map { " on switch '\(plans[$0].name)'" } ?? ""))
            }
        } else {
            for s in plans.indices where only == nil || only == s { selected[s] = Array(repeating: true, count: plans[s].ports.count) }
        }
        let direction = req.direction ?? "both"
        guard ["in", "out", "both"].contains(direction) else { throw RuntimeError("bad direction '\(direction)': in, out or both") }
        let selection = CaptureSelection(ports: selected, vlan: try parseVLAN(req.vlan),
                                         ingress: direction != "out", egress: direction != "in", drops: req.drops ?? false)
        guard let dp = datapath else { throw RuntimeError("not forwarding") }

        // Interfaces: the selected ports, switch by switch in port order; records carry
        // their index here. With several switches an interface is named SWITCH/PORT only
        // if a port name repeats (it does not within one topology).
        var interfaceOf = plans.map { Array(repeating: UInt32(0), count: $0.ports.count) }
        var interfaces: [CaptureHeader.Interface] = []
        for s in plans.indices {
            for p in plans[s].ports.indices where selected[s][p] {
                interfaceOf[s][p] = UInt32(interfaces.count)
                let port = plans[s].ports[p]
                interfaces.append(.init(name: port.name, description: "switch \(plans[s].name), port group \(port.portGroup), \(port.mode)"))
            }
        }
        let switches = selection.switchIndices.map { plans[$0].name }
        let header = CaptureHeader(switch: switches.joined(separator: ","), interfaces: interfaces)
        var line = [UInt8](try JSON.encoder().encode(header))
        line.append(UInt8(ascii: "\n"))
        let client = UnixConnection(borrowing: fd)
        guard client.send(line) else { return nil }

        let session = CaptureSession(selection: selection)
        dp.addCapture(session)
        defer { dp.removeCapture(session) }
        while !isStopping {
            // The client never sends after its request: readable means it hung up.
            if client.waitReadable(milliseconds: 20), client.peerHungUp() { break }
            let (records, lost, fed) = dp.withLock { lock in (session.drain(), session.lost, lock.feeds(session)) }
            // A reload that changed a selected switch's ports ended the session.
            guard !records.isEmpty else { if fed { continue } else { break } }
            var out = Data()
            for r in records {
                out.appendLE(UInt32(r.bytes.count)); out.appendLE(interfaceOf[r.switchIndex][r.port]); out.appendLE(r.timestampNanoseconds)
                out.appendLE(UInt32(r.originalLength)); out.append(r.point.rawValue); out.append(r.reason?.rawValue ?? 255)
                out.appendLE(UInt16(0)); out.appendLE(lost)
                out.append(contentsOf: r.bytes)
            }
            if !out.withUnsafeBytes({ client.send($0) }) { break }
        }
        return nil
    }
}

extension Data {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}
