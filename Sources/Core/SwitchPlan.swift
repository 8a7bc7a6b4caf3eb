import Model

/// VMware's security trio for a port. Each `false` means "reject" (the default).
///
/// A port group's `security: {promiscuous, mac-changes, forged-transmits}` in the topology and
/// the plan's `PortPlan.security`: one type for both.
public struct PortSecurity: Hashable, Sendable {
    /// The port receives every frame of its VLANs, like a mirror of its VLANs.
    public var promiscuous: Bool
    /// Frames are delivered to the port for addresses other than its configured MAC (the
    /// guest may change its MAC). False: unicast to any other address is not delivered.
    public var macChanges: Bool
    /// The guest may send with a source MAC other than its configured one.
    public var forgedTransmits: Bool
    public init(promiscuous: Bool = false, macChanges: Bool = false, forgedTransmits: Bool = false) {
        self.promiscuous = promiscuous; self.macChanges = macChanges; self.forgedTransmits = forgedTransmits
    }
}

/// Storm control: most frames per second a port may send into the switch, per class.
/// `nil` is unlimited.
public struct StormLimits: Hashable, Sendable {
    public var broadcast: Int?
    public var multicast: Int?
    public var unknownUnicast: Int?
    public init(broadcast: Int? = nil, multicast: Int? = nil, unknownUnicast: Int? = nil) {
        self.broadcast = broadcast; self.multicast = multicast; self.unknownUnicast = unknownUnicast
    }
    public var isUnlimited: Bool { broadcast == nil && multicast == nil && unknownUnicast == nil }
}

/// One port as the forwarding decision sees it.
public struct PortPlan: Hashable, Sendable {
    /// The port's name (`GUEST.ethN`, or an uplink's NIC name).
    public var name: String
    /// The port group it was created from.
    public var portGroup: String
    public var mode: PortMode
    /// The NIC's MAC as configured in the topology; the security policy checks against it.
    /// `nil`: no MAC is known for the port, so the security trio does not apply.
    public var configuredMAC: MACAddress?
    public var security: PortSecurity
    /// Most dynamic MAC entries the port may hold (MAC-flood protection); beyond it the
    /// port's own least recently seen entry is evicted.
    public var macLimit: Int
    public var storm: StormLimits
    /// Forward IEEE reserved group frames (STP, LACP, LLDP…) within the port group instead
    /// of dropping them.
    public var l2Transparency: Bool
    /// For an uplink port: its member number in the switch's team (the NIC's position in
    /// `uplinks.nics`). nil for a guest port.
    public var uplinkMember: Int?
    /// For a guest port: false when its port group says `uplinks: none` (or the switch has
    /// no uplinks); nothing it sends reaches an uplink, nothing from an uplink reaches it.
    public var usesUplinks: Bool
    /// The port's transmit side takes a virtio-net header, so GSO frames and partial
    /// checksums pass whole (a TAP with `IFF_VNET_HDR`, an AF_PACKET socket with
    /// `PACKET_VNET_HDR`, a vhost-user virtqueue). Without it such a frame is segmented, or
    /// its checksum finished, in software before it is sent (`EgressItem.finishOffload`).
    public var acceptsOffloads: Bool
    /// For a link port (one end of a patch link between two switches): the port at
    /// the other end. nil for guest ports and uplinks.
    public var link: LinkPeer?
    /// Traffic shaping of the port (its port group's `shaping:`); nil: not shaped. Ingress is
    /// what the guest sends into the switch, egress what the switch sends to the guest.
    public var shaping: ShapingPolicy?
    /// For a tunnel port (VXLAN to another host or a remote VTEP): its far end.
    /// nil for every other port. See `TunnelPeer` for the frame form a tunnel port uses.
    public var tunnel: TunnelPeer?

    public init(name: String, portGroup: String, mode: PortMode, configuredMAC: MACAddress? = nil,
                security: PortSecurity = PortSecurity(), macLimit: Int = PortPlan.defaultMACLimit,
                storm: StormLimits = StormLimits(), l2Transparency: Bool = false,
                uplinkMember: Int? = nil, usesUplinks: Bool = true, acceptsOffloads: Bool = false,
                link: LinkPeer? = nil, shaping: ShapingPolicy? = nil, tunnel: TunnelPeer? = nil) {
        self.name = name; self.portGroup = portGroup; self.mode = mode; self.configuredMAC = configuredMAC
        self.security = security; self.macLimit = macLimit; self.storm = storm; self.l2Transparency = l2Transparency
        self.uplinkMember = uplinkMember; self.usesUplinks = usesUplinks; self.acceptsOffloads = acceptsOffloads
        self.link = link
        self.shaping = shaping
        self.tunnel = tunnel
    }

    /// True for an uplink (a physical NIC of the switch's team).
    public var isUplink: Bool { uplinkMember != nil }
    /// True for a link port (a patch link to another switch).
    public var isLink: Bool { link != nil }
    /// True for a tunnel port (VXLAN).
    public var isTunnel: Bool { tunnel != nil }
    /// `guest`, `uplink`, `link` or `tunnel`: the `kind` column of `tapestry ports`.
    public var kind: String { isUplink ? "uplink" : isLink ? "link" : isTunnel ? "tunnel" : "guest" }

    /// The port-group label of uplink ports (not a valid port-group name, so never confused
    /// with one).
    public static let uplinkGroup = "(uplinks)"

    /// Default per-port learning limit: an eighth of the default table, so one guest
    /// flooding random source MACs can never fill the table by itself.
    public static let defaultMACLimit = 1024
}

/// The far end of a link port: a port of another switch, joined in memory (an Open vSwitch
/// patch port pair). What one end's switch sends out of it, the other end's switch receives.
public struct LinkPeer: Hashable, Sendable {
    /// The other switch.
    public var switchName: String
    /// Its port at the other end (`link-THISSWITCH`, or `link-THISSWITCH-N`).
    public var portName: String
    public init(switchName: String, portName: String) { self.switchName = switchName; self.portName = portName }
}

/// What the per-frame path needs to know about a port, as plain values only.
///
/// `PortPlan` holds strings and (for trunks) an array, so every copy of one costs reference
/// counting; `decide` and `forEachEgress` read these instead, and a trunk's allowed list as
/// a bitmap slice of `SwitchPlan.allowedWords`.
public struct HotPort: Sendable {
    public var isTrunk: Bool
    /// The access VLAN (`.untagged` for `vlan: none`); unused on trunks.
    public var access: VLANID
    public var native: VLANID?
    /// First word of this trunk's 64-word VLAN bitmap in `SwitchPlan.allowedWords`.
    public var allowedBase: Int
    /// The configured MAC, when one is known.
    public var configuredMAC: MACAddress?
    public var security: PortSecurity
    public var macLimit: Int
    public var l2Transparency: Bool
    public var isMirrorDestination: Bool
    /// Index of the port's group among the plan's groups (compare instead of strings).
    public var group: Int
    /// Team member number of an uplink port; -1 for guest ports.
    public var teamMember: Int16
    /// A guest port whose frames may leave by the team (see `PortPlan.usesUplinks`); false
    /// for uplinks themselves.
    public var usesUplinks: Bool
    /// See `PortPlan.acceptsOffloads`.
    public var acceptsOffloads: Bool
    /// For an access port in a private VLAN: its `PrivateVLANType` raw value; 0 otherwise.
    public var privateVLANType: UInt8 = 0
    /// For an access port in a private VLAN: the primary VLAN.
    public var privateVLANPrimary: VLANID = .untagged
    /// A tunnel port (`PortPlan.tunnel`): split horizon applies, and egress checks the
    /// underlay's size limit.
    public var isTunnel = false
    /// For a tunnel port: the largest inner frame the underlay carries unfragmented
    /// (`TunnelPeer.largestFrame`); 0 otherwise.
    public var tunnelLargestFrame: Int32 = 0
    @inlinable public var isUplink: Bool { teamMember >= 0 }
}

/// A MAC address pinned to a port: never aged, never evicted, never moved by learning.
public struct StaticMACEntry: Hashable, Sendable {
    public var vlan: VLANID
    public var mac: MACAddress
    public var port: PortIndex
    public init(vlan: VLANID, mac: MACAddress, port: PortIndex) { self.vlan = vlan; self.mac = mac; self.port = port }
}

/// A port mirror (SPAN): copies of what the source ports receive and/or send go out of the
/// destination ports, unchanged (as seen on the source port).
public struct MirrorPlan: Hashable, Sendable {
    public var name: String
    public var sources: [PortIndex]
    /// Mirror frames the sources receive (`in`/`both`).
    public var ingress: Bool
    /// Mirror frames the sources send (`out`/`both`).
    public var egress: Bool
    public var destinations: [PortIndex]
    public init(name: String, sources: [PortIndex], ingress: Bool, egress: Bool, destinations: [PortIndex]) {
        self.name = name; self.sources = sources; self.ingress = ingress; self.egress = egress; self.destinations = destinations
    }
}

/// The compiled, immutable forwarding plan of one switch.
///
/// Built once from a validated topology; the datapath only reads it. Flood sets are
/// precomputed per VLAN in compressed-row form (`floodStart[v] ..< floodStart[v+1]` indexes
/// `floodPorts`), so flooding walks a contiguous array with no hashing and no allocation.
public struct SwitchPlan: Sendable {
    /// Every field of the plan, in one immutable object.
    ///
    /// The plan holds some twenty arrays and strings; as a struct of its own fields, each
    /// copy (`let plan = sw.plan` on the per-frame path) cost as many retains and releases
    /// (≈6% of the datapath's CPU under 64-byte load, perf). Behind one reference a copy is
    /// one retain, and the per-frame code reads `storage`'s `let`s in place. All fields are
    /// immutable `let`s of Sendable types, so sharing the object across threads is safe.
    @usableFromInline final class Storage: @unchecked Sendable {
        @usableFromInline let name: String
        @usableFromInline let ports: [PortPlan]
        /// Largest L3 payload (the switch MTU).
        @usableFromInline let mtu: Int
        /// `mtu` + 14 (the Ethernet header), kept below `Int.max` - 8 so that adding two
        /// tags' 8 bytes per frame cannot overflow.
        @usableFromInline let largestUntaggedFrame: Int
        /// Dynamic entries unused this long are removed.
        @usableFromInline let aging: Duration
        /// Most entries the MAC table holds; beyond it, fair eviction.
        @usableFromInline let macLimit: Int
        @usableFromInline let staticEntries: [StaticMACEntry]
        @usableFromInline let mirrors: [MirrorPlan]
        /// Per port: true when it is a mirror destination (receives copies only; excluded from
        /// flooding and learning; what it sends is dropped).
        @usableFromInline let isMirrorDestination: [Bool]
        /// Per port: mirror destinations for frames the port receives, and for frames it sends.
        @usableFromInline let mirrorOnIngress: [[PortIndex]]
        @usableFromInline let mirrorOnEgress: [[PortIndex]]
        /// True when any mirror exists (one branch on the per-frame path otherwise).
        @usableFromInline let hasMirrors: Bool
        /// The most egress-mirror destinations of any one port.
        @usableFromInline let mirrorFanout: Int
        @usableFromInline let floodStart: [Int32]
        @usableFromInline let floodPorts: [Int32]
        /// Per port, the plain-value view the per-frame path reads.
        @usableFromInline let hot: [HotPort]
        /// `hot`'s elements in memory of their own, written once in `init` and never again
        /// (hence `@unchecked Sendable`): the per-frame path reads a field at a time, with no
        /// bounds check, retain or copy of the whole 64-byte record (port indexes come from
        /// the plan itself).
        @usableFromInline let hotPorts: UnsafeMutablePointer<HotPort>
        /// Trunk VLAN bitmaps, 64 words per trunk port (see `HotPort.allowedBase`).
        @usableFromInline let allowedWords: [UInt64]
        /// Promiscuous members per VLAN, same layout as the flood sets.
        @usableFromInline let promiscuousStart: [Int32]
        @usableFromInline let promiscuousPorts: [Int32]
        /// True when any port is promiscuous (the per-frame path skips the set otherwise).
        @usableFromInline let hasPromiscuousPorts: Bool
        /// The switch's NIC team (nil for a guest-only switch).
        @usableFromInline let team: TeamConfig?
        /// Per team member, its port index.
        @usableFromInline let uplinkPorts: [PortIndex]
        /// Guest ports whose traffic may leave by the team.
        @usableFromInline let carriedPorts: [PortIndex]
        /// VLANs the uplinks carry (beacon probes go out on each).
        @usableFromInline let uplinkVLANs: [VLANID]
        /// Private VLANs, and per VLAN (4096 entries, empty without private VLANs) its
        /// `primary << 8 | PrivateVLANType` (0 for a plain VLAN; a plain VLAN's own number as
        /// its primary, so `learningVLAN` is one load).
        @usableFromInline let privateVLANs: [PrivateVLAN]
        @usableFromInline let privateVLANInfo: [UInt32]
        @usableFromInline let hasPrivateVLANs: Bool
        /// IGMP/MLD snooping (nil: off).
        @usableFromInline let multicast: MulticastSnooping?
        /// Ports that are always multicast-router ports: the configured ones and the uplinks.
        @usableFromInline let multicastRouterPorts: [Int32]
        /// True when some port is shaped.
        @usableFromInline let hasShaping: Bool

        deinit { hotPorts.deinitialize(count: hot.count); hotPorts.deallocate() }

        init(name: String, ports: [PortPlan], mtu: Int, aging: Duration, macLimit: Int,
             staticEntries: [StaticMACEntry], mirrors: [MirrorPlan], team: TeamConfig?,
             privateVLANs: [PrivateVLAN], multicast: MulticastSnooping?) {
            self.name = name; self.ports = ports; self.mtu = mtu
            largestUntaggedFrame = mtu > Int.max - 22 ? Int.max - 8 : mtu + 14
            // Private VLANs: each VLAN in at most one, once.
            var info = [UInt32]()
            if !privateVLANs.isEmpty {
                info = (0..<4096).map { UInt32($0) << 8 }
                for pv in privateVLANs {
                    let p = UInt32(pv.primary.rawValue)
                    for (v, t) in [(pv.primary, PrivateVLANType.promiscuous)] + (pv.isolated.map { [($0, .isolated)] } ?? [])
                        + pv.community.map({ ($0, PrivateVLANType.community) }) {
                        precondition(!v.isUntaggedDomain && info[Int(v.rawValue)] & 0xFF == 0, "VLAN \(v) is in two private VLANs")
                        info[Int(v.rawValue)] = p << 8 | UInt32(t.rawValue)
                    }
                }
            }
            self.privateVLANs = privateVLANs
            privateVLANInfo = info
            hasPrivateVLANs = !privateVLANs.isEmpty
            self.multicast = multicast
            hasShaping = ports.contains { $0.shaping?.ingress != nil || $0.shaping?.egress != nil }
            var teamPorts: [(Int, PortIndex)] = []
            for (i, p) in ports.enumerated() { if let m = p.uplinkMember { teamPorts.append((m, i)) } }
            teamPorts.sort { $0.0 < $1.0 }
            precondition(teamPorts.map(\.0) == Array(0..<teamPorts.count), "uplink members must be 0..<n")
            precondition(team == nil || team!.memberCount == teamPorts.count, "team size differs from the uplink ports")
            self.team = teamPorts.isEmpty ? nil : (team ?? TeamConfig(memberCount: teamPorts.count))
            uplinkPorts = teamPorts.map(\.1)
            carriedPorts = teamPorts.isEmpty ? [] : ports.indices.filter { !ports[$0].isUplink && ports[$0].usesUplinks }
            uplinkVLANs = teamPorts.first.map { ports[$0.1].mode.memberVLANs.sorted { $0.rawValue < $1.rawValue } } ?? []
            self.aging = aging; self.macLimit = macLimit; self.staticEntries = staticEntries
            self.mirrors = mirrors
            var destination = Array(repeating: false, count: ports.count)
            var onIngress = Array(repeating: [PortIndex](), count: ports.count)
            var onEgress = Array(repeating: [PortIndex](), count: ports.count)
            for m in mirrors {
                for d in m.destinations { destination[d] = true }
                for s in m.sources {
                    if m.ingress { onIngress[s] += m.destinations.filter { $0 != s && !onIngress[s].contains($0) } }
                    if m.egress { onEgress[s] += m.destinations.filter { $0 != s && !onEgress[s].contains($0) } }
                }
            }
            isMirrorDestination = destination
            var words: [UInt64] = []
            var groups: [String] = []
            var hotPorts: [HotPort] = []
            for (i, p) in ports.enumerated() {
                let group = groups.firstIndex(of: p.portGroup) ?? { groups.append(p.portGroup); return groups.count - 1 }()
                var h = HotPort(isTrunk: false, access: .untagged, native: nil, allowedBase: 0, configuredMAC: p.configuredMAC,
                                security: p.security, macLimit: p.macLimit, l2Transparency: p.l2Transparency,
                                isMirrorDestination: destination[i], group: group,
                                teamMember: Int16(p.uplinkMember ?? -1), usesUplinks: p.uplinkMember == nil && p.usesUplinks,
                                acceptsOffloads: p.acceptsOffloads)
                if let t = p.tunnel {
                    h.isTunnel = true
                    h.tunnelLargestFrame = Int32(clamping: t.largestFrame)
                }
                switch p.mode {
                case .access(let v):
                    h.access = v
                    if !info.isEmpty, info[Int(v.rawValue)] & 0xFF != 0 {
                        h.privateVLANType = UInt8(info[Int(v.rawValue)] & 0xFF)
                        h.privateVLANPrimary = VLANID(UInt16(info[Int(v.rawValue)] >> 8))
                    }
                case .trunk(let allowed, let native):
                    h.isTrunk = true; h.native = native; h.allowedBase = words.count
                    words += allowed.words
                }
                hotPorts.append(h)
            }
            hot = hotPorts
            self.hotPorts = .allocate(capacity: max(1, hotPorts.count))
            self.hotPorts.initialize(from: hotPorts, count: hotPorts.count)
            allowedWords = words
            mirrorOnIngress = onIngress
            mirrorOnEgress = onEgress
            hasMirrors = !mirrors.isEmpty
            mirrorFanout = onEgress.map(\.count).max() ?? 0
            var members = Array(repeating: [Int32](), count: 4096)
            for (i, p) in ports.enumerated() where !destination[i] {
                for v in p.mode.memberVLANs { members[Int(v.rawValue)].append(Int32(i)) }
            }
            // A private VLAN's VLANs reach the ports the matrix allows (see `PrivateVLAN`):
            // the flood and promiscuous sets of its VLANs are rebuilt from that rule.
            func delivers(_ v: VLANID, _ h: HotPort) -> Bool {
                if h.isTrunk || h.privateVLANType == 0 { return false }
                let from = UInt8(info[Int(v.rawValue)] & 0xFF)
                guard from != 0, UInt16(info[Int(v.rawValue)] >> 8) == h.privateVLANPrimary.rawValue else { return false }
                if from == PrivateVLANType.promiscuous.rawValue || h.privateVLANType == PrivateVLANType.promiscuous.rawValue { return true }
                return from == PrivateVLANType.community.rawValue && h.access == v
            }
            for pv in privateVLANs {
                for v in pv.vlans {
                    members[Int(v.rawValue)] = ports.indices.filter { i in
                        !destination[i] && (hotPorts[i].isTrunk ? ports[i].mode.isMember(v) : delivers(v, hotPorts[i]))
                    }.map { Int32($0) }
                }
            }
            var routers = Set(multicast?.routerPorts ?? [])
            // Uplinks, and tunnels (a group's members may be on any host: head-end replication
            // sends its traffic and reports to every tunnel; each host's snooping filters).
            for (i, p) in ports.enumerated() where p.isUplink || p.isTunnel { routers.insert(i) }
            multicastRouterPorts = routers.filter { $0 >= 0 && $0 < ports.count && !destination[$0] }.sorted().map { Int32($0) }
            var start = [Int32](); start.reserveCapacity(4097)
            var flat = [Int32]()
            for v in 0..<4096 { start.append(Int32(flat.count)); flat += members[v] }
            start.append(Int32(flat.count))
            floodStart = start; floodPorts = flat
            var pStart = [Int32](); pStart.reserveCapacity(4097)
            var pFlat = [Int32]()
            for v in 0..<4096 {
                pStart.append(Int32(pFlat.count))
                pFlat += members[v].filter { ports[Int($0)].security.promiscuous }
            }
            pStart.append(Int32(pFlat.count))
            promiscuousStart = pStart; promiscuousPorts = pFlat
            hasPromiscuousPorts = !pFlat.isEmpty
        }
    }

    @usableFromInline let storage: Storage

    /// True when `other` is this very plan (not merely an equal one): the same compiled
    /// object, so the same switch runtime generation.
    public func isSame(_ other: SwitchPlan) -> Bool { storage === other.storage }

    /// - Parameters:
    ///   - privateVLANs: the switch's private VLANs (`private-vlans:`); an access port in one
    ///     of their VLANs is a private VLAN port (`PrivateVLAN`). Each VLAN in at most one.
    ///   - multicast: IGMP/MLD snooping (`multicast-snooping: true`); nil: off.
    public init(name: String, ports: [PortPlan], mtu: Int = 1500, aging: Duration = .seconds(300),
                macLimit: Int = 8192, staticEntries: [StaticMACEntry] = [], mirrors: [MirrorPlan] = [],
                team: TeamConfig? = nil, privateVLANs: [PrivateVLAN] = [], multicast: MulticastSnooping? = nil) {
        storage = Storage(name: name, ports: ports, mtu: mtu, aging: aging, macLimit: macLimit,
                          staticEntries: staticEntries, mirrors: mirrors, team: team,
                          privateVLANs: privateVLANs, multicast: multicast)
    }

    /// True when some port is shaped (the datapath skips the shaper otherwise).
    @inlinable public var hasShaping: Bool { storage.hasShaping }
    /// Ports that are always multicast-router ports (configured ones and uplinks).
    @inlinable public var multicastRouterPorts: [Int32] { storage.multicastRouterPorts }

    @inlinable public var name: String { storage.name }
    @inlinable public var ports: [PortPlan] { storage.ports }
    /// Largest L3 payload (the switch MTU).
    @inlinable public var mtu: Int { storage.mtu }
    /// Dynamic entries unused this long are removed.
    @inlinable public var aging: Duration { storage.aging }
    /// Most entries the MAC table holds; beyond it, fair eviction.
    @inlinable public var macLimit: Int { storage.macLimit }
    @inlinable public var staticEntries: [StaticMACEntry] { storage.staticEntries }
    @inlinable public var mirrors: [MirrorPlan] { storage.mirrors }
    /// Per port: true when it is a mirror destination (receives copies only; excluded from
    /// flooding and learning; what it sends is dropped).
    @inlinable public var isMirrorDestination: [Bool] { storage.isMirrorDestination }
    /// Per port: mirror destinations for frames the port receives, and for frames it sends.
    @inlinable public var mirrorOnIngress: [[PortIndex]] { storage.mirrorOnIngress }
    @inlinable public var mirrorOnEgress: [[PortIndex]] { storage.mirrorOnEgress }
    /// True when any mirror exists (one branch on the per-frame path otherwise).
    @inlinable public var hasMirrors: Bool { storage.hasMirrors }
    /// The most egress-mirror destinations of any one port (sizes the datapath's room per frame).
    @inlinable public var mirrorFanout: Int { storage.mirrorFanout }
    /// Per port, the plain-value view the per-frame path reads.
    @inlinable public var hot: [HotPort] { storage.hot }
    /// `port`'s learning limit (`PortPlan.macLimit`), for the datapath's `learn`: one load,
    /// where `hot[port].macLimit` costs an array's bounds check (and its reference).
    /// `port` must be a port of this plan.
    @inlinable @inline(__always)
    public func macLimit(port: PortIndex) -> Int { storage.hotPorts[port].macLimit }
    /// The switch's NIC team (nil for a guest-only switch).
    @inlinable public var team: TeamConfig? { storage.team }
    /// Per team member, its port index.
    @inlinable public var uplinkPorts: [PortIndex] { storage.uplinkPorts }
    /// Guest ports whose traffic may leave by the team.
    @inlinable public var carriedPorts: [PortIndex] { storage.carriedPorts }
    /// VLANs the uplinks carry (beacon probes go out on each).
    @inlinable public var uplinkVLANs: [VLANID] { storage.uplinkVLANs }

    /// Longest frame accepted from a wire: MTU + Ethernet header + up to two tags.
    @inlinable
    public func maximumFrameLength(tags: Int) -> Int { storage.largestUntaggedFrame &+ 4 &* tags }

    /// Ports that are members of `vlan`, in port order (the flood set).
    @inlinable
    public func floodSet(_ vlan: VLANID) -> ArraySlice<Int32> {
        let v = Int(vlan.rawValue)
        return storage.floodPorts[Int(storage.floodStart[v])..<Int(storage.floodStart[v + 1])]
    }

    /// True when trunk `port` lists `vlan` (its native VLAN aside).
    @inlinable @inline(__always)
    public func trunk(_ port: HotPort, allows vlan: VLANID) -> Bool {
        storage.allowedWords[port.allowedBase + Int(vlan.rawValue >> 6)] & (1 << UInt64(vlan.rawValue & 63)) != 0
    }

    /// Ingress classification of a frame on `port` (the plain-value fast path).
    @inlinable @inline(__always)
    public func ingressClass(of header: FrameHeader, on port: HotPort) -> IngressClass {
        Core.ingressClass(of: header, trunk: port.isTrunk, access: port.access, native: port.native) { trunk(port, allows: $0) }
    }

    /// Egress rewrite toward `port` (the plain-value fast path); nil when a frame of `vlan`
    /// does not leave by `port`. A private VLAN's access ports follow the matrix (`delivers`):
    /// untagged, whichever of the private VLAN's VLANs the frame is in.
    @inlinable @inline(__always)
    public func egressRewrite(vlan: VLANID, ingressTagLength: Int, priority: UInt16, on port: HotPort) -> EgressRewrite? {
        if port.privateVLANType != 0 {
            guard privateVLANDelivers(vlan, toAccess: port) else { return nil }
            return EgressRewrite(strip: ingressTagLength, push: nil)
        }
        return Core.egressRewrite(vlan: vlan, ingressTagLength: ingressTagLength, priority: priority, trunk: port.isTrunk,
                           access: port.access, native: port.native) { trunk(port, allows: $0) }
    }

    /// Promiscuous member ports of `vlan`: they also get unicast meant for other ports.
    @inlinable
    public func promiscuousSet(_ vlan: VLANID) -> ArraySlice<Int32> {
        let v = Int(vlan.rawValue)
        return storage.promiscuousPorts[Int(storage.promiscuousStart[v])..<Int(storage.promiscuousStart[v + 1])]
    }

    /// VLANs with at least one member port.
    public var usedVLANs: [VLANID] {
        (0..<4096).compactMap { storage.floodStart[$0 + 1] > storage.floodStart[$0] ? VLANID(UInt16($0)) : nil }
    }

    /// The port called `name`, if any.
    public func portIndex(named name: String) -> PortIndex? { ports.firstIndex { $0.name == name } }
}
