import ArgumentParser
import Foundation
import Runtime
import Topology
#if canImport(Glibc)
import Glibc
#endif

/// Writes a failure to stderr (with a timestamp in the detached daemon, whose stderr is its log).
func reportFailure(_ text: String) {
    FileHandle.standardError.write(Data(((daemonMode ? logTimestamp() : "") + text + "\n").utf8))
}

// Exit status per SPEC.md §3: 0 success, 1 failure, 2 usage error.
if CommandLine.arguments.count <= 1 {
    // No command at all is a usage error, not a request for help.
    reportFailure(Tapestry.helpMessage())
    exit(2)
}
if CommandLine.arguments.dropFirst() == ["--version"] {
    // The commit is looked up only here (it may run git): never in a daemon, whose first act
    // is to close inherited fds, which would pull them out from under Foundation's threads.
    print(BuildInfo.description)
    exit(0)
}
do {
    var command = try Tapestry.parseAsRoot()
    try command.run()
} catch let code as ExitCode {
    exit(code.rawValue)
} catch let failure as Failure {
    reportFailure("tapestry: error: \(failure.message)")
    exit(1)
} catch {
    let code = Tapestry.exitCode(for: error)
    if code == .success {
        print(Tapestry.fullMessage(for: error))
        exit(0)
    }
    reportFailure(Tapestry.fullMessage(for: error))
    exit(code == .validationFailure ? 2 : 1)
}
