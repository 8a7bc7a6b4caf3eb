import CVhost
import Foundation
import LinuxIO
import Model
import Synchronization
import Testing
import TestSupport
@testable import VhostUser

/// `VhostUserPort` against a frontend in the test process over a real Unix socket with real
/// fd passing and a shared memfd: setup, frames both ways, interrupts, GET_VRING_BASE,
/// SEND_RARP, resets on bad input, reconnection, dirty logging, polling, socket permissions.
/// No privileges needed.
@Suite(.serialized) struct VhostUserPortTests {
    func socketPath(_ tag: String) -> String { "/tmp/vht-\(getpid())-\(tag)-\(UInt32.random(in: 0...UInt32.max)).sock" }
    func frame(_ n: Int, seed: UInt8 = 1) -> [UInt8] {
        // dst, src MACs (unicast), ethertype IPv4, payload.
        [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0] + testFrame(n - 14, seed: seed)
    }

    func withServerPort(_ tag: String, poll: Int = 0, _ body: (VhostUserPort, String) throws -> Void) throws {
        let path = socketPath(tag)
        let port = try VhostUserPort(name: "t.\(tag)", socketPath: path, mode: .server(VhostSocketPermissions()), pollMicroseconds: poll,
                                     log: { print("  \($0)") })
        defer { port.close() }
        try body(port, path)
    }

    @Test func framesBothWaysWithInterrupts() throws {
        try withServerPort("both") { port, path in
            let fe = try FakeFrontend(connectTo: path)
            try fe.setUp()
            let runner = try PortRunner(port)
            defer { runner.stop() }
            #expect(runner.wait { port.isRunning })

            // Guest → switch.
            let sent = (0..<5).map { vnetHeader() + frame(60 + $0, seed: UInt8($0)) }
            for s in sent { fe.transmit(s) }
            #expect(runner.wait { runner.received.count == 5 }, "got \(runner.received.count)")
            #expect(runner.received == sent)
            #expect(fe.driver.takeUsed(1).count == 5, "TX chains returned to the guest")

            // Switch → guest, with an interrupt.
            var rxOffsets: [Int] = []
            for _ in 0..<8 { rxOffsets.append(fe.driver.post(0, [.writable(2048)]).offsets[0]) }
            _ = fe.call[0].drain()
            let out = frame(200, seed: 9)
            runner.send(vnetHeader(flags: 1, csumStart: 34, csumOffset: 6) + out)
            #expect(runner.wait { runner.sendResults.count == 1 })
            #expect(runner.sendResults == [.bytes(200)])
            let used = fe.driver.takeUsed(0)
            #expect(used.map(\.len) == [212])
            let got = fe.driver.bytes(at: rxOffsets[0], count: 212)
            #expect(Array(got[0..<10]) == Array(vnetHeader(flags: 1, csumStart: 34, csumOffset: 6)[0..<10]))
            #expect(got[10] == 1, "num_buffers")
            #expect(Array(got[12...]) == out)
            #expect(runner.wait { fe.call[0].drain() > 0 }, "the guest got an RX interrupt")

            // No buffers left: the frame is refused as a full queue, not lost silently.
            for _ in 0..<7 { runner.send(vnetHeader() + frame(100)) }
            runner.send(vnetHeader() + frame(100))
            #expect(runner.wait { runner.sendResults.count == 9 })
            #expect(runner.sendResults.last == .wouldBlock)
        }
    }

    @Test func getVringBaseStopsTheRing() throws {
        try withServerPort("base") { port, path in
            let fe = try FakeFrontend(connectTo: path)
            try fe.setUp()
            let runner = try PortRunner(port)
            defer { runner.stop() }
            for i in 0..<3 { fe.transmit(vnetHeader() + frame(64, seed: UInt8(i))) }
            #expect(runner.wait { runner.received.count == 3 })
            #expect(try fe.getVringBase(1) == 3)
            fe.transmit(vnetHeader() + frame(64))
            usleep(200_000)
            #expect(runner.received.count == 3, "a stopped ring is not read")
            #expect(!port.isRunning)
            // QEMU restarts the ring where it stopped (migration, vm stop/cont).
            try fe.setUpRing(1, base: 3)
            #expect(runner.wait { runner.received.count == 4 }, "restarted at base 3, the pending frame comes through")
        }
    }

    @Test func sendRARPIsReadAsAFrame() throws {
        try withServerPort("rarp") { port, path in
            let fe = try FakeFrontend(connectTo: path)
            try fe.setUp()
            let runner = try PortRunner(port)
            defer { runner.stop() }
            try fe.send(.sendRARP, payload: [0x52, 0x54, 0, 1, 2, 3, 0, 0])
            #expect(runner.wait { !runner.received.isEmpty })
            let f = runner.received.first ?? []
            #expect(f.count == 72)
            #expect(f.count == 72 && Array(f[18..<24]) == [0x52, 0x54, 0, 1, 2, 3] && f[24] == 0x80 && f[25] == 0x35)
            #expect(port.statistics.rarps == 1)
        }
    }

    @Test func malformedMessageResetsAndTheNextFrontendIsServed() throws {
        try withServerPort("bad") { port, path in
            let fe = try FakeFrontend(connectTo: path)
            try fe.sendRaw([1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])    // version 2
            var b: UInt8 = 0
            #expect(read(fe.fd, &b, 1) == 0, "the backend closed the connection")
            #expect(port.statistics.resets["protocol-error"] == 1)
            // A fake that asks for a feature never offered.
            let fe2 = try FakeFrontend(connectTo: path)
            try fe2.send(.setFeatures, payload: fe2.u64(1 << 63))
            #expect(read(fe2.fd, &b, 1) == 0)
            #expect(port.statistics.resets["protocol-error"] == 2)
            // A ring outside the memory table.
            let fe3 = try FakeFrontend(connectTo: path)
            try fe3.send(.setFeatures, payload: fe3.u64(VirtioFeature.version1))
            try fe3.setMemTable(needReply: false)
            try fe3.send(.setVringNum, payload: fe3.state(1, 256))
            var a: [UInt8] = []
            a.appendLE32(1); a.appendLE32(0)
            for v: UInt64 in [0x10, 0x20, 0x30, 0] { a.appendLE64(v) }
            try fe3.send(.setVringAddr, payload: a)
            try fe3.send(.setVringKick, payload: fe3.u64(1), fds: [fe3.kick[1].fd])
            #expect(read(fe3.fd, &b, 1) == 0)
            #expect(port.statistics.resets["protocol-error"] == 3)
            // And a well-behaved frontend still works.
            let fe4 = try FakeFrontend(connectTo: path)
            try fe4.setUp()
            let runner = try PortRunner(port)
            defer { runner.stop() }
            fe4.transmit(vnetHeader() + frame(64))
            #expect(runner.wait { runner.received.count == 1 })
        }
    }

    @Test func badDescriptorResetsThePortOnlyAndOthersKeepForwarding() throws {
        try withServerPort("fault") { port, path in
            try withServerPort("fine") { other, otherPath in
                let fe = try FakeFrontend(connectTo: path)
                try fe.setUp()
                let good = try FakeFrontend(connectTo: otherPath)
                try good.setUp()
                let runner = try PortRunner(port), otherRunner = try PortRunner(other)
                defer { runner.stop(); otherRunner.stop() }
                // A descriptor pointing beyond guest memory.
                fe.driver.writeDescriptor(table: fe.driver.descOffset(1), 0, addr: 0xdead_0000_0000, len: 64, flags: 0, next: 0)
                fe.driver.makeAvailable(1, head: 0)
                fe.kick[1].signal()
                var b: UInt8 = 0
                #expect(read(fe.fd, &b, 1) == 0, "the backend dropped the connection")
                #expect(port.statistics.resets["descriptor-outside-memory"] == 1)
                #expect(runner.received.isEmpty)
                good.transmit(vnetHeader() + frame(64))
                #expect(otherRunner.wait { otherRunner.received.count == 1 }, "the other port is untouched")
                // The faulty guest's frontend reconnects and starts over.
                let again = try FakeFrontend(connectTo: path)
                try again.setUp()
                again.transmit(vnetHeader() + frame(64))
                #expect(runner.wait { runner.received.count == 1 })
            }
        }
    }

    @Test func clientModeReconnects() throws {
        let path = socketPath("client")
        let listener = try Syscall.require("listen") { cv_listen(path) }
        defer { close(listener); unlink(path) }
        let port = try VhostUserPort(name: "t.client", socketPath: path, mode: .client, log: { print("  \($0)") })
        defer { port.close() }
        let runner = try PortRunner(port)
        defer { runner.stop() }
        for round in 0..<2 {
            let fd = cv_accept(listener)
            #expect(fd >= 0, "round \(round): the port connected")
            let fe = try FakeFrontend(fd: fd)
            try fe.setUp()
            fe.transmit(vnetHeader() + frame(64, seed: UInt8(round)))
            #expect(runner.wait { runner.received.count == round + 1 })
            fe.disconnect()                          // "QEMU restarts"
            #expect(runner.wait { !port.isRunning })
        }
        // The port reconnected at once after the second round too (into the backlog).
        #expect(runner.wait { port.statistics.connections == 3 && port.statistics.disconnects == 2 })
    }

    @Test func dirtyLogDuringTraffic() throws {
        try withServerPort("log") { port, path in
            let fe = try FakeFrontend(connectTo: path)
            try fe.setUp(features: VirtioFeature.offered)
            let runner = try PortRunner(port)
            defer { runner.stop() }
            // Migration starts: a log for 4 MiB of guest memory past gpaBase.
            let pages = (Int(fe.driver.gpaBase) + FakeFrontend.memorySize) / 4096
            let logSize = (pages + 7) / 8
            let logFD = try Syscall.require("memfd") { cv_memfd("log", UInt64(logSize)) }
            var logMem: UnsafeMutableRawPointer? = nil
            try Syscall.require("mmap") { cv_mmap_shared(logFD, UInt64(logSize), 0, &logMem) }
            defer { _ = cv_munmap(logMem!, UInt64(logSize)) }
            var p: [UInt8] = []
            p.appendLE64(UInt64(logSize)); p.appendLE64(0)
            try fe.send(.setLogBase, payload: p, fds: [logFD])
            close(logFD)
            _ = try fe.receive()
            let log = DirtyLog(bitmap: logMem!, size: logSize)
            let (_, offs) = fe.driver.post(0, [.writable(2048)])
            runner.send(vnetHeader() + frame(300))
            #expect(runner.wait { runner.sendResults.count == 1 })
            let page = (fe.driver.gpa(offs[0])) / 4096
            #expect(log.isMarked(page: page), "the RX buffer's page")
            #expect(log.isMarked(page: fe.driver.gpa(fe.driver.usedOffset(0)) / 4096), "the used ring's page")
            // Guest TX buffers are only read: their pages stay clean.
            let (_, txOffs) = fe.driver.post(1, [.readable(vnetHeader() + frame(64))])
            fe.kick[1].signal()
            #expect(runner.wait { runner.received.count == 1 })
            #expect(!log.isMarked(page: fe.driver.gpa(txOffs[0]) / 4096) || fe.driver.gpa(txOffs[0]) / 4096 == page)
        }
    }

    @Test func pollModeTakesFramesWithoutKicks() throws {
        try withServerPort("poll", poll: 500_000) { port, path in
            let fe = try FakeFrontend(connectTo: path)
            try fe.setUp()
            let runner = try PortRunner(port)
            defer { runner.stop() }
            fe.transmit(vnetHeader() + frame(64))
            #expect(runner.wait { runner.received.count == 1 })
            // Within the poll window a frame needs no kick.
            fe.driver.post(1, [.readable(vnetHeader() + frame(64, seed: 2))])
            #expect(runner.wait(timeout: 0.4) { runner.received.count == 2 }, "polled")
        }
    }

    @Test func kickModeArmsKicksWhenIdle() throws {
        try withServerPort("kick") { port, path in
            let fe = try FakeFrontend(connectTo: path)
            try fe.setUp(features: VirtioFeature.offered & ~VirtioFeature.logAll & ~VirtioFeature.eventIdx)
            let runner = try PortRunner(port)
            defer { runner.stop() }
            fe.transmit(vnetHeader() + frame(64))
            #expect(runner.wait { runner.received.count == 1 })
            #expect(runner.wait { fe.driver.usedFlags[1] & VringFlag.usedNoNotify == 0 }, "idle: kicks wanted")
            // Without a kick the frame waits (nobody polls)...
            fe.driver.post(1, [.readable(vnetHeader() + frame(64, seed: 3))])
            usleep(100_000)
            #expect(runner.received.count == 1)
            // ...and the kick brings it.
            fe.kick[1].signal()
            #expect(runner.wait { runner.received.count == 2 })
        }
    }

    /// A guest that posts while the port re-arms kicks (it saw NO_NOTIFY, or an
    /// `avail_event` already passed, so it does not kick) and a reader that stops at a batch
    /// limit, as the datapath does: the port stays readable until its TX ring is empty, so
    /// no frame waits for a kick that will never come. The guest thread behaves as a virtio
    /// driver (§2.7.13: publish `avail.idx`, a full fence, then kick only when the device
    /// asked), with at most half the ring in flight.
    @Test(arguments: [false, true])
    func aBurstCutShortByTheBatchLimitLeavesThePortReadable(eventIndex: Bool) throws {
        try withServerPort("cut\(eventIndex)") { port, path in
            defer { port.detachFromDatapath() }
            let fe = try FakeFrontend(connectTo: path)
            var features = VirtioFeature.offered & ~VirtioFeature.logAll
            if !eventIndex { features &= ~VirtioFeature.eventIdx }
            try fe.setUp(features: features)
            let total = 12_000
            let posted = Atomic<Int>(0)
            let guest = Thread { [fe] in
                let d = fe.driver
                var inFlight = 0
                for i in 0..<total {
                    while inFlight >= 128 { inFlight -= d.takeUsed(1).count; if inFlight >= 128 { sched_yield() } }
                    let old = d.availIdx[1]
                    d.post(1, [.readable(vnetHeader() + [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0] + [UInt8](repeating: UInt8(i & 0xFF), count: 50))])
                    inFlight += 1
                    atomicMemoryFence(ordering: .sequentiallyConsistent)
                    let new = d.availIdx[1]
                    let kick = eventIndex ? (new &- d.availEvent(1) &- 1) < (new &- old) : d.usedFlags[1] & VringFlag.usedNoNotify == 0
                    if kick { fe.kick[1].signal() }
                    // Counted after the kick: a guest descheduled in between is not a stall.
                    posted.store(i + 1, ordering: .releasing)
                }
            }
            guest.start()
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 65600, alignment: 64)
            defer { buf.deallocate() }
            // This test thread is the datapath, reading at most 4 frames per wake-up.
            var received = 0, stalls = 0
            let deadline = Date().addingTimeInterval(60)
            while received < total && Date() < deadline {
                if cv_poll2(port.pollFD(queue: 0), -1, 2000) == 0 {
                    // Two seconds without readiness: a stall when frames wait on the ring.
                    if posted.load(ordering: .acquiring) > received { stalls += 1; break }
                    continue
                }
                for _ in 0..<4 {
                    guard case .bytes = port.read(queue: 0, into: buf) else { break }
                    received += 1
                }
                port.endReads(queue: 0)
            }
            #expect(stalls == 0 && received == total, "received \(received) of \(posted.load(ordering: .acquiring)) posted")
            // Let the guest finish (it needs the used entries of what was read).
            while posted.load(ordering: .acquiring) < total && received < total {
                guard case .bytes = port.read(queue: 0, into: buf) else { port.endReads(queue: 0); usleep(1000); continue }
                received += 1
            }
            while !guest.isFinished { port.endReads(queue: 0); usleep(1000) }
        }
    }

    @Test func aKickForADisabledRingDoesNotKeepThePortReadable() throws {
        try withServerPort("dis") { port, path in
            defer { port.detachFromDatapath() }
            let fe = try FakeFrontend(connectTo: path)
            try fe.setUp()
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 65600, alignment: 64)
            defer { buf.deallocate() }
            // This test thread is the datapath: read until the port has nothing.
            func drain() -> Int { var n = 0; while case .bytes = port.read(queue: 0, into: buf) { n += 1 }; return n }
            fe.transmit(vnetHeader() + frame(64))
            #expect(waitFor(timeout: 5) { drain() == 1 })
            try fe.send(.setVringEnable, payload: fe.state(1, 0), needReply: true)
            _ = try fe.receive()
            _ = drain()
            fe.transmit(vnetHeader() + frame(64))
            #expect(cv_poll2(port.pollFD(queue: 0), -1, 200) == 0, "not readable: the disabled ring's kick is not watched")
            #expect(drain() == 0)
            try fe.send(.setVringEnable, payload: fe.state(1, 1), needReply: true)
            _ = try fe.receive()
            #expect(cv_poll2(port.pollFD(queue: 0), -1, 2000) == 1, "readable again once enabled")
            #expect(drain() == 1, "the frame sent while disabled comes through")
        }
    }

    /// A guest without GUEST_TSO4/6 and GUEST_CSUM (QEMU with `offloads: false`, a DPDK
    /// application without receive offloads) still gets every frame: a TSO frame cut into
    /// wire segments, a partial checksum completed, in software, each with a zero header.
    @Test func offloadsTheGuestDidNotNegotiateAreFinishedInSoftware() throws {
        try withServerPort("off") { port, path in
            let fe = try FakeFrontend(connectTo: path)
            try fe.setUp(features: VirtioFeature.offered & ~(VirtioFeature.logAll | VirtioFeature.guestTSO4 | VirtioFeature.guestTSO6 | VirtioFeature.guestCSUM))
            let runner = try PortRunner(port)
            defer { runner.stop() }
            #expect(runner.wait { port.isRunning })
            var offsets: [Int] = []
            for _ in 0..<64 { offsets.append(fe.driver.post(0, [.writable(2048)]).offsets[0]) }
            // 30 000 bytes of TCP payload at an MSS of 1448: 21 segments.
            let gso = TCPFrames.gso(dst: MACAddress(rawValue: 0x02_00_00_00_00_02), src: MACAddress(rawValue: 0x02_00_00_00_00_01), payload: 30000, segmentSize: 1448)
            runner.send(gso.header + gso.frame)
            // The same super-frame with an 802.1Q tag the switch pushed: handed over in pieces
            // (MACs, tag, rest), its header's offsets moved by 4.
            let tagged = Array(gso.frame[0..<12]) + [0x81, 0x00, 0x00, 0x0A] + Array(gso.frame[12...])
            runner.send(TCPFrames.shifted(gso.header, by: 4) + tagged, pieces: [12, 4])
            // A plain TCP frame with a partial checksum, no GSO.
            let small = TCPFrames.gso(dst: MACAddress(rawValue: 0x02_00_00_00_00_02), src: MACAddress(rawValue: 0x02_00_00_00_00_01), payload: 1000, segmentSize: 1448)
            var smallHeader = small.header
            smallHeader[1] = 0   // GSO none, NEEDS_CSUM kept
            runner.send(smallHeader + small.frame)
            runner.send(vnetHeader() + frame(1000))
            #expect(runner.wait { runner.sendResults.count == 4 })
            #expect(runner.sendResults == [.bytes(gso.frame.count), .bytes(tagged.count), .bytes(small.frame.count), .bytes(1000)])
            #expect(port.statistics.drops.isEmpty, "nothing dropped: \(port.statistics.drops)")
            #expect(port.statistics.segmentedInSoftware == 2)
            #expect(port.statistics.checksummedInSoftware == 1)

            let used = fe.driver.takeUsed(0)
            #expect(used.count == 21 + 21 + 1 + 1, "each segment in a buffer of its own")
            guard used.count == 44 else { return }
            // Buffers are used in the order they were posted.
            func delivered(_ i: Int) -> [UInt8] { fe.driver.bytes(at: offsets[i], count: used[i].len) }
            for (first, vlan) in [(0, 0), (21, 4)] {
                var payload: [UInt8] = []
                for i in first..<first + 21 {
                    let b = delivered(i)
                    #expect(Array(b[0..<10]) == [UInt8](repeating: 0, count: 10), "a finished frame carries a zero header")
                    let f = Array(b[12...])
                    let l3 = 14 + vlan, l4 = l3 + 20
                    #expect(f.count <= 14 + vlan + 40 + 1448)
                    #expect(TCPFrames.onesComplement(Array(f[l3..<l4])) == 0xFFFF, "IPv4 header checksum")
                    let tcpLength = f.count - l4
                    let pseudo = Array(f[l3 + 12..<l3 + 20]) + [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xFF)]
                    #expect(TCPFrames.onesComplement(pseudo + Array(f[l4...])) == 0xFFFF, "TCP checksum of segment \(i - first)")
                    payload += f[(l4 + 20)...]
                }
                #expect(payload == Array(gso.frame[54...]), "the segments carry the payload in order")
            }
            let c = delivered(42)
            let f = Array(c[12...])
            #expect(Array(c[0..<10]) == [UInt8](repeating: 0, count: 10))
            let pseudo = Array(f[26..<34]) + [0, 6, 0x03, 0xFC]   // 20 + 1000 bytes of TCP
            #expect(TCPFrames.onesComplement(pseudo + Array(f[34...])) == 0xFFFF, "the completed checksum verifies")
            #expect(Array(f[54...]) == Array(small.frame[54...]))
        }
    }

    @Test func socketPermissions() throws {
        let path = socketPath("perm")
        let port = try VhostUserPort(name: "t.perm", socketPath: path,
                                     mode: .server(VhostSocketPermissions(owner: "nobody", group: "0", mode: 0o660)))
        defer { port.close() }
        var st = stat()
        #expect(lstat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o660)
        #expect(st.st_uid == getpwnam("nobody")!.pointee.pw_uid)
        #expect(st.st_gid == 0)
        #expect(throws: VhostSetupError.unknownUser("no-such-user-x")) {
            _ = try VhostUserPort(name: "t.bad", socketPath: socketPath("bad"), mode: .server(VhostSocketPermissions(owner: "no-such-user-x")))
        }
        // A regular file at the path is not replaced.
        let file = socketPath("file")
        _ = FileManager.default.createFile(atPath: file, contents: Data())
        defer { unlink(file) }
        #expect(throws: VhostSetupError.pathInUse(file)) {
            _ = try VhostUserPort(name: "t.file", socketPath: file, mode: .server(VhostSocketPermissions()))
        }
    }
}
