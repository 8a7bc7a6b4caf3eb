import Core
import Foundation
import Model
@testable import Runtime
import Testing
import TestSupport

/// A `trace` request holds the datapath lock one frame at a time (`Fabric.trace(_:inPort:…)`):
/// the largest request the control socket admits (64 KiB of hex frames, about 2100 of them)
/// must not keep the workers waiting for all of them. Found by the control fuzzer
/// (Fuzz/corpus/control/trace-largest): in one hold it stalled forwarding for the whole request.
@Suite(.serialized) struct TraceLockTests {
    @Test func aLargeTraceRequestHoldsTheLockOneFrameAtATime() throws {
        let plan = SwitchPlan(name: "sw0", ports: [
            PortPlan(name: "a.eth0", portGroup: "v10", mode: .access(VLANID(10))),
            PortPlan(name: "b.eth0", portGroup: "v10", mode: .access(VLANID(10)),
                     shaping: ShapingPolicy(ingress: ShapingLimit(averageBitsPerSecond: 1_000_000_000, burstBytes: 1 << 20))),
            PortPlan(name: "c.eth0", portGroup: "v10", mode: .access(VLANID(10))),
        ], multicast: MulticastSnooping())
        let ports = (0..<3).map { _ in SocketPairPort() }
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: ports)])
        dp.start()
        defer { dp.stop() }
        // As many minimal frames as the 64 KiB request line holds.
        let frames = Array(repeating: FrameBuilder(dst: .broadcast, src: mac(0xA)).type(EtherType.arp).bytes, count: 2100)

        // The structure, not the timing: a trace of N frames takes the lock N times (plus
        // its own reads of the plan), never once for all of them.
        let before = dp.withLock { l in l.controlHolds }
        let traces = try Fabric.trace(frames, inPort: 0, switchIndex: 0, plan: plan, on: dp)
        let after = dp.withLock { l in l.controlHolds }
        #expect(traces.count == frames.count && traces.allSatisfy { $0.verdict == "flood" })
        #expect(after - before - 1 >= UInt64(frames.count), "\(after - before - 1) lock holds for \(frames.count) frames")
    }
}
