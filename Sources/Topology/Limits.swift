/// The bounds a topology file must stay within, so that loading one costs bounded memory and
/// time whatever the file holds (a 448-byte alias bomb grew `validate` to 7 GB, a
/// 50 MB trunk list took 90 s).
///
/// Each bound is checked where it can first be known, and exceeding one is a located error
/// (`file:line:column`), never a crash or a hang:
/// - the byte size before the text is parsed at all (`load(path:)` reads at most one byte
///   more than the limit);
/// - nesting depth, alias count and node count while libyaml's events arrive, so nothing
///   beyond the limit is ever built (an alias counts as the nodes it stands for, without
///   being copied);
/// - list lengths and entry counts while validating.
///
/// Past those checks every validation step is O(n log n) or better in the number of nodes
/// (dictionaries, sorting, union-find; no pairwise comparisons), and "did you mean"
/// suggestions are computed for at most `maxSuggestions` errors.
///
/// The defaults are generous for hand-written and generated labs: 1 MiB also fits in one
/// etcd value (etcd's default request limit is 1.5 MiB), so a file can be shared as the
/// fabric's desired state.
public struct TopologyLimits: Sendable, Equatable {
    /// Largest file, in bytes (1 MiB).
    public var maxFileBytes = 1 << 20
    /// Most YAML nodes (scalars, lists and mappings; an alias counts as a copy of its target).
    public var maxNodes = 200_000
    /// Deepest nesting of lists and mappings. A topology needs about 8.
    public var maxDepth = 32
    /// Most aliases (`*name`) in one file.
    public var maxAliases = 1_000
    /// Longest scalar, in bytes (the longest a topology needs is a path, 4 096).
    public var maxScalarBytes = 8_192
    /// Longest diagnostic message, in characters: a message quotes the value it is about, and
    /// an aliased long value must not multiply into megabytes of output.
    public var maxMessageLength = 1_024
    /// Most switches.
    public var maxSwitches = 256
    /// Most port groups on one switch.
    public var maxPortGroups = 1_024
    /// Most guests.
    public var maxGuests = 4_096
    /// Most NICs of one guest.
    public var maxNICs = 8
    /// Most entries in a trunk list (there are only 4094 VLANs).
    public var maxTrunkEntries = 4_094
    /// Most uplink NICs of one switch.
    public var maxUplinkNICs = 32
    /// Most mirrors on one switch.
    public var maxMirrors = 64
    /// Most static MAC entries on one switch.
    public var maxStaticMACs = 16_384
    /// Most MAC-table entries of all switches together (their `mac-table: {limit}`s): the
    /// tables are allocated in full when the topology comes up, about 40 bytes an entry, so
    /// 4 Mi entries are about 160 MiB. One switch may have up to 1 Mi; without this bound,
    /// 256 switches of 1 Mi would have made `up` allocate some 10 GB (found while fuzzing
    /// the reload path).
    public var maxTotalMACEntries = 4_194_304
    /// Most links between switches.
    public var maxLinks = 1_024
    /// Most hosts.
    public var maxHosts = 256
    /// Most remote VTEPs of one switch.
    public var maxRemoteVTEPs = 1_024
    /// Most addresses on one NIC.
    public var maxAddresses = 16
    /// Most routes of one guest.
    public var maxRoutes = 256
    /// Most etcd endpoints.
    public var maxEtcdEndpoints = 16
    /// Most HA isolation addresses.
    public var maxIsolationAddresses = 8
    /// Most static multicast router ports, and static groups, of one switch (each).
    public var maxMulticastStatics = 4_096
    /// Errors that get a "did you mean" suggestion; later errors are reported without one,
    /// so a file of thousands of misspellings cannot make validation quadratic.
    public var maxSuggestions = 200

    /// The limits `tapestry validate`, `up` and `reload` use.
    public static let standard = TopologyLimits()

    public init() {}
}
