import Core
import Foundation
import LinuxIO
import Model
import Runtime
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A multiqueue port without root: one socket pair per queue. The test injects on a chosen
/// queue (as the kernel steers a guest's flow to one queue of a multiqueue TAP) and reads
/// what the switch wrote through any queue.
final class MultiQueuePort: PortIO {
    let queues: [SocketPairPort]
    init(queues: Int) { self.queues = (0..<queues).map { _ in SocketPairPort() } }
    var queueCount: Int { queues.count }
    var vnetHeaderSize: Int { 0 }
    var txVNetHeaderSize: Int { 0 }
    func pollFD(queue: Int) -> Int32 { queues[queue].switchEnd }
    func read(queue: Int, into buffer: UnsafeMutableRawBufferPointer) -> IOResult { queues[queue].read(into: buffer) }
    func writev(queue: Int, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult { queues[queue].writev(iov, count: count) }
    func takePendingError() -> Int32 { 0 }
    func close() {}

    /// Frames the switch wrote to any queue, with the queue each came by.
    func received(waitingMilliseconds ms: Int32 = 200) -> [(queue: Int, frame: [UInt8])] {
        queues.enumerated().flatMap { q, port in port.received(waitingMilliseconds: q == 0 ? ms : 20).map { (q, $0) } }
    }
}

/// Several datapath threads share one switch: each reads its own queues, all decide under
/// the datapath lock (one MAC table), and every frame and counter is accounted exactly once.
@Suite(.serialized) struct WorkerTests {
    let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "a.eth0", portGroup: "v10", mode: .access(VLANID(10))),
        PortPlan(name: "b.eth0", portGroup: "v10", mode: .access(VLANID(10))),
        PortPlan(name: "t.eth0", portGroup: "trunk", mode: .trunk(allowed: VLANSet([VLANID(10)]), native: nil)),
    ], mtu: 1500)

    @Test func aMACLearnedByOneWorkerForwardsFramesReadByAnother() throws {
        let p = (0..<3).map { _ in MultiQueuePort(queues: 2) }
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)], threads: 2)
        #expect(dp.threadCount == 2)
        dp.start()
        defer { dp.stop() }
        let a = mac(0xA), b = mac(0xB)
        // Queue 0 of a is worker 0's: it learns a and floods.
        p[0].queues[0].inject(FrameBuilder(dst: .broadcast, src: a).type(EtherType.arp).bytes)
        let flooded = p[1].received()
        #expect(flooded.map(\.frame) == [FrameBuilder(dst: .broadcast, src: a).type(EtherType.arp).bytes])
        #expect(flooded.map(\.queue) == [0], "worker 0 writes through its own queue")
        #expect(p[2].received().map(\.frame) == [FrameBuilder(dst: .broadcast, src: a).tagged(10).type(EtherType.arp).bytes])
        // Queue 1 of b is worker 1's: its reply to a is known unicast (worker 0 learned a).
        p[1].queues[1].inject(FrameBuilder(dst: a, src: b).bytes)
        let reply = p[0].received()
        #expect(reply.map(\.frame) == [FrameBuilder(dst: a, src: b).bytes])
        #expect(reply.map(\.queue) == [1], "worker 1 writes through its own queue")
        #expect(p[2].received(waitingMilliseconds: 50).isEmpty, "known unicast is not flooded")
        let entries = dp.withLock { l in l.switches[0].table(l).entries(now: .now) }
        #expect(Set(entries.map { "\($0.mac)/\($0.port)" }) == ["\(a)/0", "\(b)/1"])
    }

    @Test func moreQueuesThanThreadsAreAllRead() throws {
        // Queue q belongs to worker q mod threads: with one thread, queue 2 is still read.
        let p = (0..<2).map { _ in MultiQueuePort(queues: 3) }
        let dp = try Datapath(switches: [SwitchRuntime(plan: SwitchPlan(name: "sw0", ports: Array(plan.ports.prefix(2))), ports: p)], threads: 1)
        dp.start()
        defer { dp.stop() }
        p[0].queues[2].inject(FrameBuilder(dst: .broadcast, src: mac(1)).bytes)
        #expect(p[1].received().map(\.queue) == [0])
    }

    @Test func pollModeForwardsAndStops() throws {
        let p = (0..<2).map { _ in MultiQueuePort(queues: 2) }
        let dp = try Datapath(switches: [SwitchRuntime(plan: SwitchPlan(name: "sw0", ports: Array(plan.ports.prefix(2))), ports: p)],
                              threads: 2, busyPollMicroseconds: 200_000)
        #expect(dp.busyPollMicroseconds == 200_000)
        dp.start()
        for i in 0..<20 {
            p[0].queues[i % 2].inject(FrameBuilder(dst: .broadcast, src: mac(1)).bytes)
            #expect(p[1].received().count == 1, "frame \(i) forwarded while the workers spin")
        }
        let started = Date()
        dp.stop()   // while both workers are inside their 200 ms spin
        // A liveness check, not a speed one: a spin that ignored the stop would never return.
        #expect(Date().timeIntervalSince(started) < 10, "stop ends the spin")
    }

    @Test func concurrentWorkersCountEveryFrameOnce() throws {
        // One guest sends on both queues of its TAP at once, so both workers read from the
        // same port and write to the same port: the shared counters (updated only under the
        // datapath lock) must add up exactly, and match what arrived.
        let p = (0..<3).map { _ in MultiQueuePort(queues: 2) }
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)], threads: 2)
        dp.start()
        defer { dp.stop() }
        let a = mac(0xA), c = mac(0xC)
        // c is on the trunk; learn it first (one flood to a and b), so the bulk is known unicast.
        p[2].queues[0].inject(FrameBuilder(dst: .broadcast, src: c).tagged(10).bytes)
        _ = p[0].received(); _ = p[1].received()
        let perQueue = 3000
        let stop = ManagedAtomicFlag()
        nonisolated(unsafe) var drained = 0
        let receiver = DispatchGroup()
        DispatchQueue.global().async(group: receiver) {
            var n = 0
            var buf = [UInt8](repeating: 0, count: 2048)
            func drain() { for q in p[2].queues { while buf.withUnsafeMutableBytes({ recv(q.testEnd, $0.baseAddress, $0.count, 0) }) > 0 { n += 1 } } }
            while !stop.isSet { drain(); usleep(100) }
            drain()
            drained = n
        }
        let senders = DispatchGroup()
        for queue in 0..<2 {
            DispatchQueue.global().async(group: senders) {
                let f = FrameBuilder(dst: c, src: a).bytes
                var sent = 0
                while sent < perQueue {
                    let rc = f.withUnsafeBytes { send(p[0].queues[queue].testEnd, $0.baseAddress, $0.count, 0) }
                    if rc > 0 { sent += 1 } else { usleep(50) }
                }
            }
        }
        senders.wait()
        // Until the switch has read, sent and accounted everything.
        let expected = UInt64(2 * perQueue)
        let deadline = Date().addingTimeInterval(20)
        func settled() -> Bool {
            dp.withLock { l in
                let cs = l.switches[0].counters(l)
                let out = cs.snapshot(port: 2)
                return cs.snapshot(port: 0).rxFrames == expected && out.txFrames + out.drops.values.reduce(0, +) == expected
            }
        }
        while Date() < deadline && !settled() { usleep(10_000) }
        usleep(50_000)
        stop.set()
        receiver.wait()
        let (from, to) = dp.withLock { l in (l.switches[0].counters(l).snapshot(port: 0), l.switches[0].counters(l).snapshot(port: 2)) }
        #expect(from.rxFrames == expected, "every frame read once: \(from)")
        #expect(to.txFrames + to.drops.values.reduce(0, +) == expected, "every frame sent or counted as dropped once: \(to)")
        #expect(to.txFrames == UInt64(drained), "the counters match what arrived")
        #expect(to.txFrames > 0)
    }
}

/// A flag two threads share (set once, read often).
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
