import CVMSpawn
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The default guest image: a Debian kernel and a busybox initramfs, built by
/// Scripts/guest-image.sh from Debian packages and cached (first use ~20 s, then instant).
///
/// The script does the work (apt, dpkg -x, vmlinux extraction, the initramfs, a boot check);
/// this type finds it, runs it, forwards its progress and turns its four `key=value` lines
/// into paths. Keeping the build in a shell script keeps it usable, and debuggable, without
/// the Swift toolchain.
public struct GuestImage: Sendable, Equatable, Codable {
    /// How QEMU boots the kernel.
    public enum Boot: String, Sendable, Codable {
        /// An uncompressed ELF vmlinux through its PVH entry point (~4.5 s to READY under TCG).
        case pvh
        /// The compressed bzImage (the fallback, ~9.5 s under TCG: its decompressor runs emulated).
        case bzimage
    }

    public var kernel: String
    public var initrd: String
    public var boot: Boot
    /// The kernel release, e.g. 6.1.0-56-amd64.
    public var kernelVersion: String

    public init(kernel: String, initrd: String, boot: Boot, kernelVersion: String) {
        self.kernel = kernel
        self.initrd = initrd
        self.boot = boot
        self.kernelVersion = kernelVersion
    }

    /// Where the script caches the image unless told otherwise.
    public static let defaultDirectory = "/var/cache/tapestry/guest-image"

    /// Parses the script's stdout (`kernel=`, `initrd=`, `boot=`, `version=` lines; others
    /// are ignored). nil when one is missing.
    public static func parse(scriptOutput: String) -> GuestImage? {
        var fields: [String: String] = [:]
        for line in scriptOutput.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        guard let kernel = fields["kernel"], let initrd = fields["initrd"], let version = fields["version"],
              let boot = fields["boot"].flatMap(Boot.init(rawValue:)) else { return nil }
        return GuestImage(kernel: kernel, initrd: initrd, boot: boot, kernelVersion: version)
    }

    /// The places searched for the image builder, in order: `explicit`,
    /// $TAPESTRY_GUEST_IMAGE_SCRIPT, then the install prefix of the executable
    /// (`PREFIX/bin/tapestry` → `PREFIX/share/tapestry/guest-image.sh`, where
    /// `Scripts/install.sh` puts it with its `guest/` pieces; FHS), then `Scripts/guest-image.sh`
    /// in the executable's directory and its parents (a build in .build/debug sits inside the
    /// checkout), then in the current directory and its parents, and last the usual prefixes
    /// (`/usr/local/share/tapestry`, `/usr/share/tapestry`).
    public static func candidateScripts(explicit: String?, environment: [String: String],
                                        executable: String, currentDirectory: String) -> [String] {
        var out: [String] = []
        if let e = explicit { out.append(e) }
        if let e = environment["TAPESTRY_GUEST_IMAGE_SCRIPT"], !e.isEmpty { out.append(e) }
        let exeDir = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
        out.append(exeDir.deletingLastPathComponent().appendingPathComponent("share/tapestry/guest-image.sh").path)
        for start in [exeDir.path, currentDirectory] {
            var dir = URL(fileURLWithPath: start)
            for _ in 0..<6 {
                out.append(dir.appendingPathComponent("Scripts/guest-image.sh").path)
                let parent = dir.deletingLastPathComponent()
                if parent.path == dir.path { break }
                dir = parent
            }
        }
        out += ["/usr/local/share/tapestry/guest-image.sh", "/usr/share/tapestry/guest-image.sh"]
        var seen = Set<String>()
        return out.filter { seen.insert($0).inserted }
    }

    /// The first existing candidate (see `candidateScripts`); the executable is the running
    /// binary itself (/proc/self/exe), whatever argv[0] says (a detached daemon's is
    /// `tapestry`, which need not be on PATH).
    public static func locateScript(explicit: String? = nil) throws -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments.first.map(resolveExecutable) ?? ""
        let candidates = candidateScripts(explicit: explicit, environment: ProcessInfo.processInfo.environment,
                                          executable: exe, currentDirectory: FileManager.default.currentDirectoryPath)
        if let found = candidates.first(where: { FileManager.default.isReadableFile(atPath: $0) }) { return found }
        throw VMError.imageScriptNotFound(searched: candidates)
    }

    /// Builds the image if needed and returns it: runs `script` (located when nil) with
    /// `directory`, forwarding each stderr line (progress: "building guest image (first use,
    /// ~20 s)…", warnings) to `progress`. Blocks; a first build downloads ~70 MB with apt.
    /// Throws `imageBuildFailed` with the tail of the script's stderr (a missing tool, apt
    /// failing, an image that does not boot).
    public static func prepare(script: String? = nil, directory: String = defaultDirectory,
                               timeout: TimeInterval = 900,
                               progress: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws -> GuestImage {
        let path = try locateScript(explicit: script)
        guard let bash = Spawn.which("bash") else { throw VMError.qemuNotFound("bash") }
        let outPath = NSTemporaryDirectory() + "tapestry-guest-image-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out"
        let out = open(outPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard out >= 0 else { throw VMError.io(operation: "create", path: outPath, errno: errno) }
        defer { unlink(outPath) }
        var pipeFDs: [Int32] = [0, 0]
        let piped = cvm_pipe(&pipeFDs)
        guard piped == 0 else { close(out); throw VMError.io(operation: "pipe for", path: path, errno: -piped) }
        let spawned = Spawn.spawn(path: bash, arguments: [path, directory], stdout: out, stderr: pipeFDs[1])
        close(out)
        close(pipeFDs[1])
        defer { close(pipeFDs[0]) }
        let pid: pid_t
        switch spawned {
        case .success(let p): pid = p
        case .failure(let e): throw VMError.spawnFailed(name: "guest-image", executable: bash, errno: e.rawValue)
        }

        // Forward stderr line by line until EOF (the script and everything it started are
        // done with it) or the deadline, then reap.
        var tail: [String] = []
        var pending = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        func emit(_ bytes: ArraySlice<UInt8>) {
            let line = stripEscapes(String(decoding: bytes, as: UTF8.self))
            progress(line)
            tail.append(line)
            if tail.count > 20 { tail.removeFirst() }
        }
        while true {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { timedOut = true; break }
            var pfd = pollfd(fd: pipeFDs[0], events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, Int32(min(remaining, 1) * 1000))
            if r < 0 && errno == EINTR { continue }
            if r == 0 { continue }
            let n = read(pipeFDs[0], &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            pending += buffer[0..<n]
            while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                emit(pending[..<nl])
                pending.removeSubrange(...nl)
            }
        }
        if !pending.isEmpty { emit(pending[...]) }
        if timedOut { kill(-pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit = ProcessExit(waitStatus: status)
        if timedOut {
            throw VMError.imageBuildFailed(status: exit, stderrTail: tail + ["(timed out after \(Int(timeout)) s)"])
        }
        let stdout = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        guard !exit.isFailure, let image = parse(scriptOutput: stdout) else {
            throw VMError.imageBuildFailed(status: exit, stderrTail: tail.isEmpty ? ["(no output; stdout: \(stdout))"] : tail)
        }
        return image
    }

    /// argv[0] as an absolute path (argv[0] may be relative or a bare name found on PATH).
    private static func resolveExecutable(_ arg0: String) -> String {
        if arg0.hasPrefix("/") { return arg0 }
        if arg0.contains("/") { return FileManager.default.currentDirectoryPath + "/" + arg0 }
        return Spawn.which(arg0) ?? arg0
    }
}
