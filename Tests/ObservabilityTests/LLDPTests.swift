import Foundation
import Glibc
import LinuxIO
import Model
import Testing
import TestSupport
@testable import Observability

/// LLDPDU parsing and building, the neighbour table, and both directions against lldpd.
@Suite struct LLDPTests {
    static let ours = LLDPDU.tapestry(hostName: "hv1", nic: "eth1", systemDescription: "Tapestry virtual switch (topology lab)",
                                      managementAddresses: [.ipv4(Packets.ipv4("192.0.2.9"), interfaceNumber: 3)])

    func parse(_ bytes: [UInt8]) -> Result<LLDPDU, LLDPParseError> { bytes.withUnsafeBytes { LLDPDU.parse($0) } }

    @Test func ourLLDPDURoundTrips() throws {
        var du = Self.ours
        du.portVLAN = 10
        du.portDescription = "uplink of sw0"
        let frame = LLDP.frame(from: mac(0x11), du)
        #expect(frame.count >= 60 && Array(frame[0..<6]) == [0x01, 0x80, 0xc2, 0, 0, 0x0e] && frame[12] == 0x88 && frame[13] == 0xcc)
        let back = try frame.withUnsafeBytes { try LLDP.parse(frame: $0).get() }
        #expect(back == du)
        #expect(back.chassisID.description == "hv1" && back.chassisID.subtypeName == "local")
        #expect(back.portID.description == "eth1" && back.portID.subtypeName == "ifname")
        #expect(back.managementAddresses.first?.description == "192.0.2.9" && back.managementAddresses.first?.interfaceNumber == 3)
        #expect(back.capabilities == LLDPCapabilities(system: 4, enabled: 4) && back.ttl == 121)
        let h = try #require(frame.withUnsafeBytes { FrameHeader.parse($0) })
        #expect(LLDP.isLLDP(h))
    }

    @Test func mandatoryTLVsAreCheckedInOrder() {
        let good = Self.ours.encoded()
        #expect(parse([]) == .failure(.badChassisID))
        // Port ID first: bad chassis.
        var swapped = good
        swapped[0] = 2 << 1
        #expect(parse(swapped) == .failure(.badChassisID))
        // Chassis ID of length 1 (subtype only).
        #expect(parse([0x02, 0x01, 0x07]) == .failure(.badChassisID))
        // No TTL: chassis, port, then End.
        #expect(parse([0x02, 0x02, 0x07, 0x61, 0x04, 0x02, 0x05, 0x62, 0x00, 0x00]) == .failure(.badTTL))
        // A TLV running past the end.
        #expect(parse(Array(good[0..<(good.count - 8)]) + [0x0c, 0x40, 0x01]) == .failure(.truncatedTLV))
        // A second chassis ID after the mandatory three.
        #expect(parse(Array(good.dropLast(2)) + [0x02, 0x04, 0x07, 0x61, 0x62, 0x63, 0, 0]) == .failure(.duplicateMandatoryTLV))
        // Without an End TLV (allowed since 802.1AB-2016).
        #expect((try? parse(Array(good.dropLast(2))).get()) == Self.ours)
    }

    @Test func malformedOptionalTLVsAreSkippedNotFatal() throws {
        var bytes = Array(Self.ours.encoded().dropLast(2))
        bytes += [0x0e, 0x03, 0, 4, 0]                 // capabilities of length 3
        bytes += [0x10, 0x02, 0x09, 0x01]              // management address too short
        bytes += [0xfe, 0x03, 0x00, 0x80, 0xc2]        // org TLV without a subtype
        bytes += [0x12, 0x01, 0x41]                    // type 9 (reserved)
        bytes += [0, 0]
        let du = try parse(bytes).get()
        #expect(du.skippedTLVs == 4 && du.managementAddresses.count == 1 && du.capabilities?.system == 4)
    }

    /// Random bytes and random mutations of a valid LLDPDU never trap (the fuzz target in
    /// Fuzz/lldp runs the same entry point under libFuzzer with ASan).
    @Test func randomInputNeverTraps() {
        var rng = SplitMix(seed: 21)
        let good = LLDP.frame(from: mac(1), Self.ours)
        var parsed = 0
        for round in 0..<20_000 {
            var f = good
            if round % 2 == 0 {
                for _ in 0..<(1 + Int(rng.next() % 6)) { f[Int(rng.next() % UInt64(f.count))] = UInt8(truncatingIfNeeded: rng.next()) }
                f = Array(f.prefix(Int(rng.next() % UInt64(f.count + 1))))
            } else {
                f = (0..<Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            }
            if case .success = f.withUnsafeBytes({ LLDP.parse(frame: $0) }) { parsed += 1 }
        }
        #expect(parsed > 0)
    }

    @Test func neighborTableExpiresHonoursShutdownAndIsBounded() {
        var t = LLDPNeighborTable(maxPerPort: 2, maxTotal: 3)
        var du = Self.ours
        du.ttl = 10
        #expect(t.receive(du, on: "eth1", now: 1000) == .added)
        #expect(t.receive(du, on: "eth1", now: 2000) == .refreshed)
        du.systemDescription = "changed"
        #expect(t.receive(du, on: "eth1", now: 3000) == .changed)
        #expect(t.neighbors(on: "eth1").first?.expires == 13_000)
        var other = du
        other.portID = .interfaceNamePort("eth2")
        #expect(t.receive(other, on: "eth1", now: 3000) == .added)
        var third = du
        third.chassisID = .locallyAssignedChassis("x")
        #expect(t.receive(third, on: "eth1", now: 3000) == .refused && t.tooManyNeighbors == 1)
        #expect(t.receive(third, on: "eth2", now: 3000) == .added && t.count == 3)
        #expect(t.receive(third, on: "eth3", now: 3000) == .refused)
        #expect(t.expire(now: 12_999).isEmpty)
        #expect(t.expire(now: 13_000).count == 3 && t.count == 0 && t.ageouts == 3)
        #expect(t.receive(du, on: "eth1", now: 20_000) == .added)
        du.ttl = 0
        #expect(t.receive(du, on: "eth1", now: 20_001) == .removed && t.count == 0)
    }

    @Test func transmitScheduleAndModes() {
        var s = LLDPTransmitSchedule(interval: 30_000)
        #expect(s.due(now: 0) && !s.due(now: 29_999) && s.due(now: 30_000))
        s.somethingChanged(now: 30_200)
        #expect(!s.due(now: 30_500) && s.due(now: 31_000))
        #expect(LLDPMode.both.receives && LLDPMode.both.transmits && LLDPMode.listen.receives && !LLDPMode.listen.transmits)
        #expect(!LLDPMode.off.receives && !LLDPMode.off.transmits && LLDPMode(rawValue: "advertise")?.transmits == true)
    }

    // MARK: - Against lldpd

    /// lldpd 1.0.16 in a namespace ("the upstream switch"), joined by a veth to an end in this
    /// namespace where the test sends and receives LLDP on an AF_PACKET socket.
    final class Upstream {
        let prefix = Capabilities.uniquePrefix("ol")
        var namespace: String { prefix + "up" }
        var upstreamLink: String { prefix + "a" }
        var ourLink: String { prefix + "b" }
        let dir: String
        var lldpd: BackgroundProcess?

        init() { dir = temporaryDirectory("lldpd") }

        func start() -> Bool {
            let setup = [
                "ip netns add \(namespace)",
                "ip link add \(upstreamLink) type veth peer name \(ourLink)",
                "ip link set \(upstreamLink) netns \(namespace)",
                "ip -n \(namespace) link set lo up",
                "ip -n \(namespace) addr add 192.0.2.1/24 dev \(upstreamLink)",
                "ip -n \(namespace) link set \(upstreamLink) up",
                "sysctl -qw net.ipv6.conf.\(ourLink).disable_ipv6=1",
                "ip link set \(ourLink) up",
            ]
            for c in setup where !sh(c).succeeded { print("setup failed: \(c)"); return false }
            // 1 s transmit interval; a name and description to look for on our side.
            let conf = "configure lldp tx-interval 1\nconfigure system hostname upstream-\(prefix)\nconfigure system description \"Upstream \(prefix)\"\n"
            try? conf.write(toFile: dir + "/lldpd.conf", atomically: true, encoding: .utf8)
            lldpd = BackgroundProcess("ip netns exec \(namespace) lldpd -d -u '\(dir)/lldpd.sock' -I \(upstreamLink) -O '\(dir)/lldpd.conf' -m 192.0.2.1",
                                      log: dir + "/lldpd.log")
            return lldpd?.waitForOutput("lldpd should resume operations", seconds: 10) == true
        }

        func lldpcli(_ args: String) -> CommandResult { sh("lldpcli -u '\(dir)/lldpd.sock' \(args)", timeout: 10) }

        deinit {
            lldpd?.stop()
            sh("ip netns del \(namespace) 2>/dev/null; ip link del \(ourLink) 2>/dev/null")
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test func lldpdAndWeSeeEachOther() throws {
        guard Capabilities.canCreateNamespaces else { try Test.cancel("skip: needs root and iproute2 (namespaces, veth)") }
        guard commandExists("lldpd") && commandExists("lldpcli") else { try Test.cancel("skip: lldpd not installed (Scripts/setup.sh installs it)") }
        let up = Upstream()
        #expect(up.start(), "lldpd did not start: \(up.lldpd?.output ?? "")")
        let socket = try PacketSocket(interface: up.ourLink, configuration: .init(perFrameWakeups: true))
        defer { socket.close() }

        // Our LLDPDU, as an advertising uplink sends it, with a port VLAN to see it decoded.
        var du = Self.ours
        du.portVLAN = 10
        let frame = LLDP.frame(from: MACAddress("02:00:00:00:0b:01")!, du)
        var table = LLDPNeighborTable()
        var heard: LLDPDU?
        let deadline = Date().addingTimeInterval(10)
        var lastSend = Date.distantPast
        var buffer = [UInt8](repeating: 0, count: 2048)
        while Date() < deadline && heard == nil {
            if Date().timeIntervalSince(lastSend) > 0.5 {
                _ = frame.withUnsafeBytes { socket.write($0) }
                lastSend = Date()
            }
            var pfd = pollfd(fd: socket.pollFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 100)
            while case .bytes(let n) = buffer.withUnsafeMutableBytes({ socket.read(into: $0) }) {
                let bytes = UnsafeRawBufferPointer(rebasing: buffer.withUnsafeBytes { $0 }[0..<n])
                guard let h = FrameHeader.parse(bytes), LLDP.isLLDP(h) else { continue }
                if case .success(let got) = LLDP.parse(frame: bytes) {
                    table.receive(got, on: up.ourLink, now: UInt64(Date().timeIntervalSince1970 * 1000))
                    heard = got
                }
            }
        }
        // Our parser reads lldpd's chassis, port, system name, management address and TTL.
        let theirs = try #require(heard, "no LLDPDU from lldpd: \(up.lldpd?.output ?? "")")
        let upstreamMAC = sh("ip -n \(up.namespace) -br link show \(up.upstreamLink)").stdout.split(separator: " ").filter { !$0.isEmpty }
        #expect(theirs.chassisID.subtypeName == "mac" && upstreamMAC.count > 2 && theirs.chassisID.description == String(upstreamMAC[2]))
        #expect(theirs.portID.subtypeName == "mac" || theirs.portID.subtypeName == "ifname")
        #expect(theirs.systemName == "upstream-\(up.prefix)" && theirs.systemDescription == "Upstream \(up.prefix)")
        #expect(theirs.portDescription == up.upstreamLink)
        #expect(theirs.managementAddresses.map(\.description).contains("192.0.2.1"))
        #expect(theirs.ttl == 4)   // tx-interval 1 × tx-hold 4 (lldpd's TTL formula)
        #expect(table.neighbors(on: up.ourLink).count == 1)

        // lldpcli shows what we advertised.
        var shown: [String: Any]?
        for _ in 0..<30 {
            let r = up.lldpcli("show neighbors details -f json")
            if let obj = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
               let lldp = obj["lldp"] as? [String: Any], lldp["interface"] != nil { shown = lldp; break }
            _ = frame.withUnsafeBytes { socket.write($0) }
            usleep(200_000)
        }
        let lldp = try #require(shown, "lldpcli shows no neighbour: \(up.lldpcli("show neighbors").stdout)")
        let text = String(decoding: try JSONSerialization.data(withJSONObject: lldp), as: UTF8.self)
        let iface = try #require((lldp["interface"] as? [String: Any])?[up.upstreamLink] as? [String: Any], "\(text)")
        let chassis = try #require((iface["chassis"] as? [String: Any])?["hv1"] as? [String: Any], "\(text)")
        let chassisID = chassis["id"] as? [String: Any]
        #expect(chassisID?["type"] as? String == "local" && chassisID?["value"] as? String == "hv1")
        #expect(chassis["descr"] as? String == "Tapestry virtual switch (topology lab)")
        #expect(chassis["mgmt-ip"] as? String == "192.0.2.9" && chassis["mgmt-iface"] as? String == "3")
        let capability = chassis["capability"] as? [String: Any]
        #expect(capability?["type"] as? String == "Bridge" && capability?["enabled"] as? Bool == true)
        let port = iface["port"] as? [String: Any]
        let portID = port?["id"] as? [String: Any]
        #expect(portID?["type"] as? String == "ifname" && portID?["value"] as? String == "eth1")
        let vlan = iface["vlan"] as? [String: Any]
        #expect(vlan?["vlan-id"] as? String == "10" && vlan?["pvid"] as? Bool == true, "\(text)")
        #expect(port?["ttl"] as? String == "121", "\(text)")

        // A shutdown LLDPDU (TTL 0) removes us from lldpd's table at once.
        du.ttl = 0
        let bye = LLDP.frame(from: MACAddress("02:00:00:00:0b:01")!, du)
        _ = bye.withUnsafeBytes { socket.write($0) }
        var gone = false
        for _ in 0..<30 where !gone {
            usleep(100_000)
            let r = up.lldpcli("show neighbors -f json")
            gone = !r.stdout.contains("hv1")
        }
        #expect(gone)
    }
}

@Suite struct LLDPNeighborRowTests {
    @Test func rowShowsWhatTheNeighbourSaid() throws {
        var du = LLDPTests.ours
        du.portVLAN = 20
        var t = LLDPNeighborTable()
        t.receive(du, on: "eth1", now: 5_000)
        let row = LLDPNeighborRow(try #require(t.neighbors(on: "eth1").first), now: 65_000)
        #expect(row.uplink == "eth1" && row.chassisId == "hv1" && row.chassisIdType == "local")
        #expect(row.portId == "eth1" && row.portIdType == "ifname" && row.portVlan == 20)
        #expect(row.managementAddresses == ["192.0.2.9"] && row.capabilities == ["bridge"])
        #expect(row.ttlSeconds == 121 && row.ageSeconds == 60 && row.expiresInSeconds == 61)
    }
}
