import Foundation
import Model
import Testing
@testable import VMRunner

/// The supervisor's life cycle against a fake QEMU: a shell script that prints the READY
/// marker into the console log named on its command line, then does what the test's script
/// says for that run (exit with a status, or sleep). Restart policy, back-off, onRestart,
/// boot failures and user stops, in about a second each, without root or QEMU.
@Suite struct VMSupervisorTests {
    /// A temporary directory with the fake QEMU and, per run N, line N of `script`.
    final class Fake {
        let dir: String
        let qemu: String

        init(runs: [String]) throws {
            dir = NSTemporaryDirectory() + "vmrunner-fake-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            qemu = dir + "/fake-qemu"
            let body = """
            #!/bin/sh
            # Fake QEMU for VMSupervisorTests.
            while [ $# -gt 0 ]; do
                case "$1" in
                    -name) name=$2 ;;
                    -chardev) log=$(echo "$2" | sed 's/.*logfile=\\([^,]*\\).*/\\1/') ;;
                esac
                shift
            done
            n=$(cat "\(dir)/runs" 2>/dev/null || echo 0); n=$((n + 1)); echo $n >"\(dir)/runs"
            step=$(sed -n "${n}p" "\(dir)/script")
            case "$step" in
                silent*) ;;
                *) printf 'booting\\r\\nTAPESTRY-GUEST-READY name=%s\\r\\n' "$name" >>"$log" ;;
            esac
            eval "${step#silent}"
            """
            try body.write(toFile: qemu, atomically: true, encoding: .utf8)
            chmod(qemu, 0o755)
            try (runs.joined(separator: "\n") + "\n").write(toFile: dir + "/script", atomically: true, encoding: .utf8)
        }

        var runs: Int { Int((try? String(contentsOfFile: dir + "/runs", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0 }

        func supervisor(_ policy: RestartPolicy, bootTimeout: TimeInterval = 10, onRestart: (@Sendable (VMSupervisor) -> Void)? = nil) throws -> VMSupervisor {
            let image = GuestImage(kernel: dir + "/vmlinux", initrd: dir + "/initrd", boot: .pvh, kernelVersion: "fake")
            return try VMSupervisor(spec: VMSpec(name: "fake1"), image: image, accel: .tcg, paths: VMPaths(name: "fake1", runDirectory: dir),
                                    restartPolicy: policy, backoff: Backoff(initial: 0.1, maximum: 0.4, resetAfter: 60),
                                    bootTimeout: bootTimeout, qemuExecutable: qemu, onRestart: onRestart, log: { _ in })
        }

        deinit { try? FileManager.default.removeItem(atPath: dir) }
    }

    func waitFor(_ timeout: TimeInterval = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    @Test func onFailureRestartsWithBackoffUntilItStays() throws {
        let fake = try Fake(runs: ["sleep 0.2; exit 3", "sleep 0.2; exit 3", "exec sleep 30"])
        let restarts = Counter()
        let vm = try fake.supervisor(.onFailure, onRestart: { _ in restarts.increment() })
        defer { vm.stop(gracePeriod: 0.1) }
        try vm.start()
        #expect(vm.status.state == .running)
        #expect(waitFor { vm.status.restarts == 2 && vm.status.state == .running })
        let s = vm.status
        #expect(s.lastExit == ProcessExit(code: 3))
        #expect(restarts.value == 2)
        #expect(fake.runs == 3)
        #expect(s.bootTime != nil && s.uptime != nil && s.pid != nil)

        // A user stop (no QMP socket here: quit fails, SIGKILL ends it) is not a failure.
        let pid = try #require(s.pid)
        vm.stop(gracePeriod: 0.1)
        #expect(vm.status.state == .stopped)
        #expect(vm.status.pid == nil)
        #expect(kill(pid, 0) != 0)
        usleep(300_000)
        #expect(fake.runs == 3, "nothing restarted after the stop")
        #expect(restarts.value == 2)
    }

    @Test func onFailureLeavesACleanExitDown() throws {
        let fake = try Fake(runs: ["sleep 0.2; exit 0", "exec sleep 30"])
        let vm = try fake.supervisor(.onFailure)
        try vm.start()
        #expect(waitFor { vm.status.state == .stopped })
        #expect(vm.status.lastExit == ProcessExit(code: 0))
        #expect(vm.status.restarts == 0)
        #expect(fake.runs == 1)
    }

    @Test func alwaysRestartsACleanExit() throws {
        let fake = try Fake(runs: ["sleep 0.2; exit 0", "exec sleep 30"])
        let vm = try fake.supervisor(.always)
        defer { vm.stop(gracePeriod: 0.1) }
        try vm.start()
        #expect(waitFor { vm.status.restarts == 1 && vm.status.state == .running })
    }

    @Test func neverLeavesAFailureFailed() throws {
        let fake = try Fake(runs: ["sleep 0.2; exit 1", "exec sleep 30"])
        let vm = try fake.supervisor(.never)
        try vm.start()
        #expect(waitFor { vm.status.state == .failed })
        #expect(vm.status.lastExit == ProcessExit(code: 1))
        #expect(fake.runs == 1)
    }

    /// While backing off, status says so and when; a stop then keeps it down.
    @Test func stopDuringBackoff() throws {
        let fake = try Fake(runs: ["sleep 0.2; exit 1", "exec sleep 30"])
        let vm = try fake.supervisor(.onFailure)
        let slow = try VMSupervisor(spec: vm.spec, image: vm.image, accel: .tcg, paths: vm.paths, restartPolicy: .onFailure,
                                    backoff: Backoff(initial: 5, maximum: 5, resetAfter: 60), qemuExecutable: fake.qemu, log: { _ in })
        try slow.start()
        #expect(waitFor { slow.status.state == .backingOff })
        #expect((slow.status.restartIn ?? 0) > 3)
        slow.stop()
        #expect(slow.status.state == .stopped)
        #expect(fake.runs == 1)
    }

    @Test func exitDuringFirstBootIsAnErrorWithoutRestart() throws {
        let fake = try Fake(runs: ["silent echo 'qemu: could not load kernel' >&2; exit 1", "exec sleep 30"])
        let vm = try fake.supervisor(.always)
        #expect {
            try vm.start()
        } throws: { error in
            guard case VMError.exitedDuringBoot(_, let status, _, let processTail) = error else { return false }
            return status == ProcessExit(code: 1) && processTail.contains("qemu: could not load kernel")
        }
        #expect(vm.status.state == .failed)
        #expect(fake.runs == 1)
    }

    @Test func startTwiceIsAnError() throws {
        let fake = try Fake(runs: ["exec sleep 30"])
        let vm = try fake.supervisor(.never)
        defer { vm.stop(gracePeriod: 0.1) }
        try vm.start()
        #expect(throws: VMError.alreadyRunning(name: "fake1")) { try vm.start() }
    }

    @Test func missingQEMUIsNamed() {
        #expect(throws: VMError.qemuNotFound("no-such-qemu-binary")) {
            try VMSupervisor(spec: VMSpec(name: "x"), image: GuestImage(kernel: "/k", initrd: "/i", boot: .pvh, kernelVersion: "v"),
                             accel: .tcg, paths: VMPaths(name: "x", runDirectory: "/tmp"), qemuExecutable: "no-such-qemu-binary")
        }
        #expect(VMError.qemuNotFound("qemu-system-x86_64").description.contains("install qemu-system-x86"))
    }
}
