import Foundation
import Testing
import TestSupport
@testable import VMRunner

/// `Spawn.spawn(networkNamespace:)`: how a host's QEMU starts inside the host's namespace
///. Needs root for the namespace it creates (`ip netns add`, removed after).
@Suite struct SpawnNamespaceTests {
    /// QEMU's spawn in a namespace that does not exist fails with ENOENT, naming it; one that
    /// exists (created here, root only) is where the child runs.
    @Test func spawnsInsideANamedNamespace() throws {
        let missing = Spawn.spawn(path: "/bin/true", arguments: [], stdout: -1, stderr: -1, networkNamespace: "tapestry-no-such-netns")
        guard case .failure(let e) = missing else { Issue.record("spawned in a missing namespace"); return }
        #expect(e.rawValue == ENOENT)
        guard getuid() == 0 else { print("skipped: creating a network namespace needs root"); return }
        let ns = Capabilities.uniquePrefix("s") + "ns"
        guard sh("ip netns add \(ns)").succeeded else { print("skipped: ip netns add failed"); return }
        defer { sh("ip netns del \(ns)") }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("\(ns).txt").path
        let fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { unlink(out) }
        let r = Spawn.spawn(path: "/bin/sh", arguments: ["-c", "readlink /proc/self/ns/net"], stdout: fd, stderr: -1, networkNamespace: ns)
        close(fd)
        guard case .success(let pid) = r else { Issue.record("spawn failed: \(r)"); return }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let inside = (try? String(contentsOfFile: out, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        let expected = sh("ip netns exec \(ns) readlink /proc/self/ns/net").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!inside.isEmpty && inside == expected, "child in \(inside), namespace \(ns) is \(expected)")
        #expect(inside != sh("readlink /proc/self/ns/net").stdout.trimmingCharacters(in: .whitespacesAndNewlines), "not the caller's")
    }

}
