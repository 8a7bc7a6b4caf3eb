import Foundation
import Testing
import TestSupport
@testable import FabricStore

extension EtcdSystemTests {
    /// Isolation against real network namespaces: ICMP echo to isolation addresses, and a host
    /// whose only link (to etcd and to its isolation address) goes down. Needs root and
    /// iproute2 (skips, saying why, otherwise). Everything carries the test's prefix and is
    /// removed on every exit path; traffic stays inside the test's namespaces and loopback.
    @Suite struct IsolationSystemTests {
        static var skipReason: String? {
            if !Capabilities.canCreateNamespaces { return "needs root and iproute2 (network namespaces)" }
            return nil
        }

        /// Loopback answers; an address behind a veth link in a namespace of ours (whose peer
        /// has no address, so ARP goes unanswered) never does, and the probe gives up at its
        /// timeout. An address without a route fails at once.
        @Test func icmpProbe() throws {
            let local = ICMPProbe().firstAnswer(["127.0.0.1", "::1"], timeout: 1)
            #expect(local.answered != nil, "no echo reply from loopback: \(local.errors)")
            #expect(ICMPProbe().firstAnswer(["not-an-address"], timeout: 0.1).errors.count == 1)
            if let r = Self.skipReason { try Test.cancel("IsolationSystemTests.icmpProbe (namespace part) skipped: \(r)") }
            let p = Capabilities.uniquePrefix("fsi")
            defer { sh("ip netns del \(p)n") }
            #expect(sh("ip netns add \(p)n && ip -n \(p)n link set lo up && ip -n \(p)n link add \(p)a type veth peer name \(p)b && ip -n \(p)n addr add 10.219.9.1/24 dev \(p)a && ip -n \(p)n link set \(p)a up && ip -n \(p)n link set \(p)b up").succeeded)
            let probe = ICMPProbe(namespace: "/run/netns/\(p)n")
            #expect(probe.firstAnswer(["10.219.9.1"], timeout: 1).answered == "10.219.9.1")   // its own address
            let t0 = Deadline.now()
            let silent = probe.firstAnswer(["10.219.9.2", "10.219.9.3"], timeout: 0.5)
            #expect(silent.answered == nil)
            #expect(Deadline.now() - t0 >= 0.45 && Deadline.now() - t0 < 1.5)
            let unroutable = probe.firstAnswer(["10.219.10.1"], timeout: 0.5)
            #expect(unroutable.answered == nil && unroutable.errors.count == 1)
            // One address answering is enough.
            #expect(probe.firstAnswer(["10.219.9.2", "127.0.0.1"], timeout: 1).answered == "127.0.0.1")
        }

        /// etcd runs in namespace E; host h1's daemon reaches it, and its isolation address (E's
        /// side of the link), only through a veth from namespace H; h2 runs in E. With
        /// `isolation-response: power-off`, taking H's link down isolates h1: it powers off its
        /// QEMU guests before h2 restarts the one with a restart policy, which runs once. With
        /// the link back, h1 registers again and starts neither.
        @Test func isolatedHostPowersOffBeforeSurvivorRestarts() throws {
            if let r = Self.skipReason { try Test.cancel("IsolationSystemTests skipped: \(r)") }
            if let r = EtcdClientSystemTests.skipReason { try Test.cancel("IsolationSystemTests skipped: \(r)") }
            let p = Capabilities.uniquePrefix("fsj")
            let nsE = "\(p)e", nsH = "\(p)h"
            defer { sh("ip netns del \(nsE); ip netns del \(nsH)") }
            let setup = sh("""
                ip netns add \(nsE) && ip netns add \(nsH) && ip -n \(nsE) link set lo up && ip -n \(nsH) link set lo up &&
                ip link add \(p)ve netns \(nsE) type veth peer name \(p)vh netns \(nsH) &&
                ip -n \(nsE) addr add 10.219.7.1/30 dev \(p)ve && ip -n \(nsH) addr add 10.219.7.2/30 dev \(p)vh &&
                ip -n \(nsE) link set \(p)ve up && ip -n \(nsH) link set \(p)vh up
                """)
            try #require(setup.succeeded, "namespace setup failed: \(setup.stderr)")
            let etcd = try EtcdCluster(tag: p, address: "10.219.7.1", namespace: nsE)
            defer { etcd.shutdown() }

            let spec = ServiceFixture.spec("iso", guests: [ServiceFixture.vm("vm1", on: "h1"), ServiceFixture.vm("vm0", on: "h1", restart: .never),
                                                           FabricGuest(name: "web", kind: .netns, host: "h1")])
            var o1 = ServiceFixture.options(ttl: 3, grace: 3)
            o1.isolationAddresses = ["10.219.7.1"]
            o1.isolationResponse = .powerOff
            let r1 = Recorder("iso/h1"), r2 = Recorder("iso/h2")
            let h1 = try FabricService(spec: spec, host: "h1", store: FabricStore(client: try ServiceFixture.client(etcd.endpoints, namespace: "/run/netns/\(nsH)"), topology: "iso"),
                                       options: o1, callbacks: r1.callbacks)
            let h2 = try FabricService(spec: spec, host: "h2", store: FabricStore(client: try ServiceFixture.client(etcd.endpoints, namespace: "/run/netns/\(nsE)"), topology: "iso"),
                                       options: ServiceFixture.options(ttl: 3, grace: 3), callbacks: r2.callbacks)
            #expect(try h1.start().start == ["vm0", "vm1", "web"])
            _ = try h2.start()
            defer { h1.stop(release: true); h2.stop(release: true) }
            #expect(ServiceFixture.wait(5) { h2.status.hosts.filter(\.alive).count == 2 } != nil)

            let cut = Deadline.now()
            #expect(sh("ip -n \(nsH) link set \(p)vh down").succeeded)
            let restarted = ServiceFixture.wait(15) { !r2.of("start").isEmpty }
            try #require(restarted != nil, "h2 did not restart vm1 within 15 s")
            let off = try #require(r1.of("power-off").first, "h1 did not power off")
            let start = r2.of("start")[0]
            print("isolation: h1 powered off \(off.guests) at +\(String(format: "%.2f", off.time - cut)) s; h2 started \(start.guests) at +\(String(format: "%.2f", start.time - cut)) s")
            #expect(off.guests == ["vm0", "vm1"])
            #expect(start.guests == ["vm1"])
            #expect(off.time < start.time)
            #expect(h1.status.isolated)
            #expect(h1.runningGuests == ["web"])   // netns guests are not powered off

            #expect(sh("ip -n \(nsH) link set \(p)vh up").succeeded)
            let back = ServiceFixture.wait(10) { h1.status.registered && !h1.status.isolated && h2.status.hosts.filter(\.alive).count == 2 }
            #expect(back != nil, "h1 did not register again")
            usleep(2_000_000)
            #expect(r1.of("start").isEmpty, "h1 started \(r1.of("start"))")   // vm1 is on h2; vm0 stays off (restart: never)
            #expect(r2.of("start").count == 1)
            #expect(try h2.store.snapshot().placements["vm1"]?.record.host == "h2")
        }
    }
}
