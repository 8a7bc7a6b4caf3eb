import Model

/// The far end of a tunnel port: a VXLAN tunnel (RFC 7348) to another host of the fabric or
/// to a remote VTEP.
///
/// ## The frame form of a tunnel port
/// Inside the switch a tunnel port is a trunk **without a native VLAN** whose allowed list
/// holds the VLANs it carries, the untagged domain (`vlan: none`, VLAN 0) included. Every
/// frame crossing it carries one 802.1Q tag naming its VLAN — VID 0 (a priority tag) for the
/// untagged domain — and that tag *is* the VNI:
///
/// ```
///   receive:   [VXLAN vni=BASE+V][inner frame]  ──▶  [dst][src][8100 V][rest of inner frame]
///   transmit:  [dst][src][8100 V][rest]         ──▶  [IP][UDP][VXLAN vni=BASE+V][dst][src][rest]
/// ```
/// So VLAN-based service (one VNI per VLAN) is the ordinary trunk rules: `decide` classifies
/// by the tag, `collectEgress` pushes it (VID 0 too: see `ingressClass`), and a QinQ inner
/// tag that passes a trunk stays inside the inner frame. An inner frame that arrives tagged
/// on VNI BASE stays in the untagged domain (the outer tag decides), so nobody hops VLANs
/// by tagging inside a tunnel.
///
/// Policy on a tunnel port (all in `decide`/`collectEgress`, so `trace` shows it):
/// - **split horizon**: a frame from a tunnel never goes into a tunnel, and tunnels and
///   uplinks never exchange frames (`DropReason.splitHorizon` for known unicast; floods skip
///   those ports). The physical network stays local to each host, as with OVN's localnet.
/// - **head-end replication**: a flood reaches every tunnel of the switch in the VLAN;
///   tunnels are multicast-router ports, so snooped groups span hosts.
/// - **never fragment** (§4.3): an output whose inner frame exceeds `largestFrame` is
///   refused (`DropReason.underlayMTUExceeded`, counted on the tunnel port).
/// - learning, aging and moves as on any port; no offloads (`acceptsOffloads` false): a GSO
///   frame bound for a tunnel is cut into segments before encapsulation (`finishOffload`),
///   and the receive side may hand a coalesced GSO frame in (Runtime's underlay receive).
public struct TunnelPeer: Hashable, Sendable {
    /// The remote VTEP's underlay address.
    public var remote: IPAddress
    /// The peer host's name (a Tapestry host), or nil for a `remote-vteps` entry.
    public var host: String?
    /// VNI of the untagged domain; VLAN V travels as `vniBase + V`.
    public var vniBase: UInt32
    /// The UDP destination port (4789 by default).
    public var udpPort: UInt16
    /// The largest inner frame (bytes from the inner Ethernet header on, inner tags
    /// included) the underlay carries without fragmenting: the underlay MTU minus 36 over
    /// IPv4 (IP 20 + UDP 8 + VXLAN 8) or 56 over IPv6.
    public var largestFrame: Int

    public init(remote: IPAddress, host: String? = nil, vniBase: UInt32, udpPort: UInt16 = 4789, largestFrame: Int) {
        self.remote = remote; self.host = host; self.vniBase = vniBase; self.udpPort = udpPort; self.largestFrame = largestFrame
    }

    /// The VNI that carries `vlan`.
    @inlinable public func vni(for vlan: VLANID) -> UInt32 { vniBase &+ UInt32(vlan.rawValue) }

    /// The largest inner frame for an underlay of `mtu` bytes (`mtu - 36` over IPv4,
    /// `mtu - 56` over IPv6; RFC 7348 §4.3: never fragment).
    public static func largestFrame(underlayMTU mtu: Int, ipv6: Bool) -> Int { mtu - (ipv6 ? 56 : 36) }

    /// The port group label of tunnel ports (not a valid port-group name).
    public static let portGroup = "(tunnels)"
}

/// Which tunnel port of which switch a VXLAN packet belongs to, from its outer source
/// address and its VNI: the receive side's demultiplexer (and its admission check).
///
/// One per underlay endpoint (UDP port): built on the control path from the running plans,
/// read per packet. A packet whose source is no VTEP of the fabric is refused
/// (`unknownVTEP`); one from a known VTEP with a VNI outside every range that VTEP shares
/// with this host is refused too (`unknownVNI`). A VLAN the remote VTEP does not serve
/// passes here and is dropped by the trunk rules on its tunnel port (`vlan-not-allowed`), so
/// it is counted on that port.
///
/// Lookup: binary search over entries sorted by address, then a scan of the address's
/// entries (one per switch it shares with this host): no hashing, no allocation.
public struct TunnelDemux: Sendable {
    /// Where a packet goes: switch `switchIndex`'s port `port`, in `vlan`.
    public struct Target: Equatable, Sendable {
        public var switchIndex: Int
        public var port: Int
        public var vlan: VLANID
        @inlinable public init(switchIndex: Int, port: Int, vlan: VLANID) { self.switchIndex = switchIndex; self.port = port; self.vlan = vlan }
    }

    /// Why a packet has no tunnel; `description` is the counter name.
    public enum Miss: UInt8, CaseIterable, Sendable, CustomStringConvertible {
        /// The outer source address is not a VTEP of any switch on this UDP port.
        case unknownVTEP
        /// The VNI is in no range the sending VTEP shares with this host (or is BASE + 4095).
        case unknownVNI
        public var description: String { self == .unknownVTEP ? "unknown-vtep" : "unknown-vni" }
    }

    @usableFromInline struct Entry: Sendable {
        @usableFromInline var high: UInt64, low: UInt64
        @usableFromInline var vniBase: UInt32
        @usableFromInline var switchIndex: Int32
        @usableFromInline var port: Int32
        init(high: UInt64, low: UInt64, vniBase: UInt32, switchIndex: Int32, port: Int32) {
            self.high = high; self.low = low; self.vniBase = vniBase; self.switchIndex = switchIndex; self.port = port
        }
    }
    @usableFromInline let entries: [Entry]

    /// The tunnels of `plans` (indexed as the datapath runs them) whose UDP port is `udpPort`.
    public init(plans: [SwitchPlan], udpPort: UInt16) {
        var list: [Entry] = []
        for (s, plan) in plans.enumerated() {
            for (p, port) in plan.ports.enumerated() {
                guard let t = port.tunnel, t.udpPort == udpPort else { continue }
                let k = TunnelDemux.key(t.remote)
                list.append(Entry(high: k.high, low: k.low, vniBase: t.vniBase, switchIndex: Int32(s), port: Int32(p)))
            }
        }
        entries = list.sorted { ($0.high, $0.low, $0.vniBase) < ($1.high, $1.low, $1.vniBase) }
    }

    /// True when no tunnel uses this UDP port.
    public var isEmpty: Bool { entries.isEmpty }

    /// An address as 128 bits, IPv4 mapped into IPv6 (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2),
    /// the same form as Wire's `UnderlayAddress` and the receive path's source addresses.
    public static func key(_ a: IPAddress) -> (high: UInt64, low: UInt64) {
        switch a {
        case .v4(let v): return (0, 0xFFFF_0000_0000 | UInt64(v.rawValue))
        case .v6(let v): return (v.high, v.low)
        }
    }

    /// The tunnel for a packet from (`high`, `low`) with `vni`, or why there is none.
    @inlinable
    public func lookup(high: UInt64, low: UInt64, vni: UInt32) -> Result<Target, MissError> {
        // Lower bound of (high, low).
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo &+ hi) >> 1
            let e = entries[mid]
            if e.high < high || (e.high == high && e.low < low) { lo = mid &+ 1 } else { hi = mid }
        }
        guard lo < entries.count, entries[lo].high == high, entries[lo].low == low else { return .failure(MissError(.unknownVTEP)) }
        var i = lo
        while i < entries.count && entries[i].high == high && entries[i].low == low {
            let e = entries[i]
            if vni >= e.vniBase && vni &- e.vniBase <= 4094 {
                return .success(Target(switchIndex: Int(e.switchIndex), port: Int(e.port), vlan: VLANID(UInt16(vni &- e.vniBase))))
            }
            i &+= 1
        }
        return .failure(MissError(.unknownVNI))
    }

    /// `Miss` as an `Error` (for `Result`; never thrown).
    public struct MissError: Error, Equatable, Sendable {
        public var miss: Miss
        @inlinable public init(_ miss: Miss) { self.miss = miss }
    }
}

extension SwitchPlan {
    /// This plan with `extra` ports after its own (same settings, indexes of existing ports
    /// unchanged): how a host's tunnel ports join a switch compiled from the topology.
    public func appending(_ extra: [PortPlan]) -> SwitchPlan {
        guard !extra.isEmpty else { return self }
        let s = storage
        return SwitchPlan(name: s.name, ports: s.ports + extra, mtu: s.mtu, aging: s.aging, macLimit: s.macLimit,
                          staticEntries: s.staticEntries, mirrors: s.mirrors, team: s.team, privateVLANs: s.privateVLANs,
                          multicast: s.multicast)
    }

    /// Indexes of the tunnel ports.
    public var tunnelPorts: [PortIndex] { ports.indices.filter { ports[$0].isTunnel } }
}
