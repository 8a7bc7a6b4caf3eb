// tapestry-vhost-bench: two vhost-user ports patched together by `CrossConnect` (the vhost
// tests' and benchmark's stand-in for the switch datapath), for measuring with a real
// frontend such as DPDK's testpmd:
//
//   tapestry-vhost-bench --a A.sock --b B.sock [--client] [--poll US] [--datapath-poll US] [--seconds N] [--quiet]
//
// --poll: the ports' own polling of an empty ring (VhostUserPort.pollMicroseconds);
// --datapath-poll: the forwarding loop spins like the datapath's poll mode instead
// (TAPESTRY_BUSY_POLL_US: non-blocking epoll_wait with sched_yield after a batch with work).
// Serves (or, with --client, connects to) both sockets, forwards every frame between them
// on one thread, and prints once a second (not with --quiet, whose summary then counts
// only the forwarding's own allocations): frames A→B and B→A per second, refused frames,
// heap allocations made by the process in that second, and this thread group's user and
// system CPU time. At the end (after --seconds, or SIGINT/SIGTERM) a summary line:
//   summary: seconds=S a_to_b=N b_to_a=N mpps=X user_ns_per_frame=U sys_ns_per_frame=K allocs_per_frame=Z
import CMallocCounter
import Foundation
import LinuxIO
import VhostUser
#if canImport(Glibc)
import Glibc
#endif

func usage() -> Never {
    FileHandle.standardError.write("usage: tapestry-vhost-bench --a SOCK --b SOCK [--client] [--poll US] [--datapath-poll US] [--seconds N] [--quiet]\n".data(using: .utf8)!)
    exit(2)
}

var a: String?, b: String?, client = false, poll = 0, seconds = 0.0, quiet = false, datapathPoll = 0
var args = CommandLine.arguments.dropFirst()
while let arg = args.popFirst() {
    switch arg {
    case "--a": a = args.popFirst()
    case "--b": b = args.popFirst()
    case "--client": client = true
    case "--quiet": quiet = true
    case "--datapath-poll": guard let v = args.popFirst().flatMap(Int.init), v >= 0 else { usage() }; datapathPoll = v
    case "--poll": guard let v = args.popFirst().flatMap(Int.init), v >= 0 else { usage() }; poll = v
    case "--seconds": guard let v = args.popFirst().flatMap(Double.init), v > 0 else { usage() }; seconds = v
    default: usage()
    }
}
guard let pathA = a, let pathB = b else { usage() }

signal(SIGINT, SIG_IGN)
signal(SIGTERM, SIG_IGN)
let stopSource = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
    let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
    s.resume()
    return s
}
let stopped = DispatchSemaphore(value: 0)
for s in stopSource { s.setEventHandler { stopped.signal() } }

func cpu() -> (user: Double, system: Double) {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return (Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6, Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6)
}

do {
    let mode: VhostUserPort.Mode = client ? .client : .server(VhostSocketPermissions(mode: 0o666))
    let log: @Sendable (String) -> Void = { print("  \($0)") }
    let portA = try VhostUserPort(name: "a", socketPath: pathA, mode: mode, pollMicroseconds: poll, log: log)
    let portB = try VhostUserPort(name: "b", socketPath: pathB, mode: mode, pollMicroseconds: poll, log: log)
    let xc = try CrossConnect(portA, portB, busyPollMicroseconds: datapathPoll)
    xc.start()
    print("forwarding \(pathA) <-> \(pathB) (\(client ? "client" : "server") mode, \(poll == 0 ? "kicks" : "poll \(poll) µs")\(datapathPoll > 0 ? ", datapath busy poll \(datapathPoll) µs" : ""))")
    let start = Date()
    var last = xc.statistics, lastAllocs = cmc_allocations(), lastCPU = cpu()
    var firstActive: (stats: (UInt64, UInt64, UInt64, UInt64), allocs: UInt64, cpu: (Double, Double), time: Date)?
    while true {
        if stopped.wait(timeout: .now() + 1) == .success { break }
        let s = xc.statistics, allocs = cmc_allocations(), c = cpu()
        let ab = s.aToB - last.aToB, ba = s.bToA - last.bToA
        if !quiet {
            print(String(format: "a->b %.3f Mpps  b->a %.3f Mpps  refused %llu/%llu  allocs %llu  user %.2f s  sys %.2f s",
                         Double(ab) / 1e6, Double(ba) / 1e6, s.droppedAtB - last.droppedAtB, s.droppedAtA - last.droppedAtA,
                         allocs - lastAllocs, c.user - lastCPU.user, c.system - lastCPU.system))
        }
        if firstActive == nil && ab + ba > 0 { firstActive = ((s.aToB, s.droppedAtB, s.bToA, s.droppedAtA), allocs, c, Date()) }
        last = s; lastAllocs = allocs; lastCPU = c
        if seconds > 0 && Date().timeIntervalSince(start) >= seconds { break }
    }
    let s = xc.statistics, allocs = cmc_allocations(), c = cpu()
    xc.stop()
    if let f = firstActive {
        let secs = Date().timeIntervalSince(f.time)
        let frames = Double((s.aToB - f.stats.0) + (s.bToA - f.stats.2))
        print(String(format: "summary: seconds=%.1f a_to_b=%llu b_to_a=%llu mpps=%.3f user_ns_per_frame=%.1f sys_ns_per_frame=%.1f allocs_per_frame=%.6f allocs=%llu",
                     secs, s.aToB - f.stats.0, s.bToA - f.stats.2, frames / secs / 1e6,
                     frames > 0 ? (c.user - f.cpu.0) * 1e9 / frames : 0, frames > 0 ? (c.system - f.cpu.1) * 1e9 / frames : 0,
                     frames > 0 ? Double(allocs - f.allocs) / frames : 0, allocs - f.allocs))
    } else {
        print("summary: no traffic")
    }
    portA.close()
    portB.close()
} catch {
    FileHandle.standardError.write("tapestry-vhost-bench: \(error)\n".data(using: .utf8)!)
    exit(1)
}
