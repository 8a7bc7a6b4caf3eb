// swift-tools-version:6.0
// Tapestry: a userspace virtual switch and network fabric for Linux.
//
// Layers (dependencies point down only; see docs/ARCHITECTURE.md):
//   tapestry (executable) → Runtime → Topology, LinuxIO, Netlink → Core → Model
// C stays at the edges: CLinux (ioctls, epoll, netns), CNetlink (libnl-route-3).
import PackageDescription

let libnlInclude: [CSetting] = [.unsafeFlags(["-I/usr/include/libnl3"])]
let v5: [SwiftSetting] = [.swiftLanguageMode(.v5)]
/// The per-frame path's classes (MACTable, Datapath) have one owning thread by design (see
/// their doc comments); Swift's dynamic exclusivity checks on their stored properties cost
/// ~60% of decide+learn in release (callgrind, tapestry-bench). Debug builds, and so the
/// tests, keep the checks.
let hotPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "Tapestry",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tapestry", targets: ["tapestry"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // Pure layers: standard library only.
        .target(name: "Model"),
        .target(name: "Core", dependencies: ["Model"], swiftSettings: hotPath),
        .target(name: "Topology", dependencies: ["Model", "Core", .product(name: "Yams", package: "Yams")]),
        // Wire formats of the offload and overlay paths (virtio-net header, checksums, GSO, VXLAN).
        .target(name: "Wire", dependencies: ["Model"]),

        // C shims.
        .target(name: "CLinux"),
        .target(
            name: "CNetlink",
            cSettings: libnlInclude,
            linkerSettings: [.linkedLibrary("nl-route-3"), .linkedLibrary("nl-3")]
        ),

        .target(name: "CPcap", linkerSettings: [.linkedLibrary("pcap")]),
        // vhost-user: SCM_RIGHTS fd passing, shared mappings, memfd.
        .target(name: "CVhost"),

        // I/O layers: move bytes, never decide.
        .target(name: "LinuxIO", dependencies: ["CLinux", "Model"], swiftSettings: v5),
        .target(name: "Netlink", dependencies: ["CNetlink", "CLinux", "Model"], swiftSettings: v5),
        .target(name: "Capture", dependencies: ["CPcap", "Model"], swiftSettings: v5),
        // vhost-user backend: virtqueues over guest memory, the protocol, VhostUserPort.
        .target(name: "VhostUser", dependencies: ["CVhost", "CLinux", "LinuxIO", "Model", "Wire"], swiftSettings: v5 + hotPath),

        // Runtime: datapath loop, control socket, guests.
        .target(name: "Runtime", dependencies: ["Model", "Core", "Topology", "LinuxIO", "Netlink", "VMRunner", "Wire", "Observability", "VhostUser", "FabricStore"], swiftSettings: v5 + hotPath),
        .executableTarget(
            name: "tapestry",
            dependencies: ["Runtime", "Topology", "Capture", "VMRunner", "Observability", "LinuxIO", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: v5
        ),

        // VM runner: guest image, QEMU argv, QMP, supervision with restarts, console.
        .target(name: "CVMSpawn"),
        .target(name: "VMRunner", dependencies: ["CVMSpawn", "Model"]),

        // Observability: IPFIX flow export, Prometheus metrics, LLDP, topology graph.
        .target(name: "Observability", dependencies: ["Model", "Core", "Topology"], swiftSettings: v5 + hotPath),
        // Fabric store: etcd client (JSON gateway, OpenSSL TLS), membership, HA and migration
        // bookkeeping. Foundation and its C shim only; the datapath never waits on it.
        .target(name: "CFabric", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        .target(name: "FabricStore", dependencies: ["CFabric"], swiftSettings: v5),

        // Micro-benchmark of the forwarding core (Scripts/bench/micro.sh); counts mallocs.
        .target(name: "CMallocCounter"),
        .executableTarget(name: "tapestry-bench", dependencies: ["Core", "Model", "CMallocCounter"]),
        // Micro-benchmark of the flow table, IPFIX encoding and metrics rendering.
        .executableTarget(name: "observability-bench", dependencies: ["Observability", "Model", "CMallocCounter"]),
        // Micro-benchmark of Wire (checksums, GSO, VXLAN): ns per operation and allocations;
        // `wire-bench ring` measures an AF_PACKET ring with virtio-net headers under traffic.
        .executableTarget(name: "wire-bench", dependencies: ["Wire", "Model", "LinuxIO", "CMallocCounter"]),
        // Two vhost-user ports patched together, measured with testpmd.
        .executableTarget(name: "tapestry-vhost-bench", dependencies: ["VhostUser", "LinuxIO", "CMallocCounter"], swiftSettings: v5),

        // Tests: one target per library target, plus shared fakes.
        .target(name: "TestSupport", dependencies: ["Model", "Core"], path: "Tests/TestSupport"),
        .testTarget(name: "ModelTests", dependencies: ["Model", "TestSupport"]),
        .testTarget(name: "CoreTests", dependencies: ["Core", "Model", "TestSupport"]),
        .testTarget(name: "TopologyTests", dependencies: ["Topology", "Core", "Model"], resources: [.copy("Fixtures")]),
        .testTarget(name: "LinuxIOTests", dependencies: ["LinuxIO", "CLinux", "Wire", "TestSupport"], swiftSettings: v5),
        .testTarget(name: "WireTests", dependencies: ["Wire", "Model", "TestSupport"]),
        .testTarget(name: "NetlinkTests", dependencies: ["Netlink", "LinuxIO", "TestSupport"], swiftSettings: v5),
        .testTarget(name: "CaptureTests", dependencies: ["Capture", "CPcap", "Model", "TestSupport"], swiftSettings: v5),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "Core", "Model", "Topology", "Observability", "FabricStore", "TestSupport"], swiftSettings: v5),
        .testTarget(name: "SystemTests", dependencies: ["TestSupport"], swiftSettings: v5),
        .testTarget(name: "FabricStoreTests", dependencies: ["FabricStore", "TestSupport"], swiftSettings: v5),
        .testTarget(name: "VMRunnerTests", dependencies: ["VMRunner", "Model", "TestSupport"]),
        .testTarget(name: "ObservabilityTests", dependencies: ["Observability", "Model", "Topology", "LinuxIO", "TestSupport"], swiftSettings: v5),
        // The README's performance numbers against their result files (Scripts/bench/*.md).
        .testTarget(name: "DocsTests"),
        .testTarget(name: "VhostUserTests", dependencies: ["VhostUser", "CVhost", "LinuxIO", "Model", "TestSupport", "VMRunner", "Wire"], swiftSettings: v5),
    ]
)
