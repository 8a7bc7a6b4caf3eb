import ArgumentParser
import Foundation
import Runtime
import Topology
#if canImport(Glibc)
import Glibc
#endif

// Exit status per SPEC.md §3: 0 success, 1 failure, 2 usage error.
do {
    var command = try Tapestry.parseAsRoot()
    try command.run()
} catch let code as ExitCode {
    exit(code.rawValue)
} catch let failure as Failure {
    FileHandle.standardError.write(Data("tapestry: error: \(failure.message)\n".utf8))
    exit(1)
} catch {
    let code = Tapestry.exitCode(for: error)
    if code == .success {
        print(Tapestry.fullMessage(for: error))
        exit(0)
    }
    FileHandle.standardError.write(Data((Tapestry.fullMessage(for: error) + "\n").utf8))
    exit(code == .validationFailure ? 2 : 1)
}
