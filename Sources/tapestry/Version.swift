import Foundation

/// What `tapestry --version` prints: the version number (this file is its one place) and the
/// commit the binary was built from, when that can be known.
///
/// - Installed by `Scripts/install.sh`: the commit recorded at install time in
///   `PREFIX/share/tapestry/BUILD` (`commit=…` and `version=…` lines), found next to the
///   binary (`PREFIX/bin/tapestry`).
/// - Run from a checkout (`.build/debug/tapestry`): the checkout's `git rev-parse HEAD`,
///   marked `+dirty` when the work tree has changes. That is the source the binary was
///   built from unless someone rebuilt without committing, which `+dirty` shows.
/// - Otherwise the version number alone.
enum BuildInfo {
    /// The release number (semantic versioning; 0.x while the command line may still change).
    static let version = "0.9.0"

    /// `0.9.0 (commit 1a2b3c4d5e6f)`, `0.9.0 (commit 1a2b3c4d5e6f+dirty, checkout /src/tapestry)`
    /// or `0.9.0`.
    static var description: String {
        let exe = executablePath()
        let bin = URL(fileURLWithPath: exe).deletingLastPathComponent()
        let build = bin.deletingLastPathComponent().appendingPathComponent("share/tapestry/BUILD").path
        if let text = try? String(contentsOfFile: build, encoding: .utf8),
           let commit = text.split(separator: "\n").first(where: { $0.hasPrefix("commit=") })?.dropFirst(7), !commit.isEmpty {
            return "\(version) (commit \(commit))"
        }
        if let root = checkoutRoot(from: bin.path), let commit = git(["-C", root, "rev-parse", "--short=12", "HEAD"]) {
            let dirty = (git(["-C", root, "status", "--porcelain", "--untracked-files=no"]) ?? "").isEmpty ? "" : "+dirty"
            return "\(version) (commit \(commit)\(dirty), checkout \(root))"
        }
        return version
    }

    /// The running binary (/proc/self/exe), symlinks resolved.
    static func executablePath() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The nearest directory at or above `start` that holds `.git` and `Package.swift`.
    static func checkoutRoot(from start: String) -> String? {
        var dir = URL(fileURLWithPath: start)
        for _ in 0..<6 {
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent(".git").path),
               FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
                return dir.path
            }
            let parent = dir.deletingLastPathComponent()
            if parent.path == dir.path { return nil }
            dir = parent
        }
        return nil
    }

    /// `git ARGS`' trimmed stdout, nil when git is missing or fails.
    static func git(_ args: [String]) -> String? {
        guard let git = ["/usr/bin/git", "/usr/local/bin/git", "/bin/git"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: git)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
