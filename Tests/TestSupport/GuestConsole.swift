import Foundation

/// Runs `command` in a QEMU guest's shell through its serial console socket (`socket`, the
/// guest image's busybox shell on ttyS0, the same shell from one client to the next) and
/// returns what it printed without prompts, or nil when it did not finish within `timeout`
/// seconds. The guest's shell hangs up when a console client leaves, sometimes seconds later
/// under load, and its init starts a new one on the next Enter; a line typed meanwhile is
/// lost. So before typing the command it makes sure a shell runs what it is sent (an `echo`
/// whose output differs from its own echo, `$((6*7))`, every 2 s for up to 30 s), sends the
/// command and its end marker as one line (both run or neither), and when a new shell's
/// banner shows up instead of the marker, does it again (3 times at most). Background
/// commands must detach from the console (`setsid sh -c '…' </dev/null >/dev/null 2>&1 &`).
public func guestConsoleRun(socket: String, command: String, timeout: Int = 30) -> String? {
    let marker = "__tapestry_done_\(UInt32.random(in: 0...UInt32.max))"
    let ready = "__tapestry_ready_\(UInt32.random(in: 0...UInt32.max))"
    let script = """
    import re, socket, sys, time
    # The socket may be missing or refuse for a moment (QEMU restarting): retry for 15 s.
    for attempt in range(60):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(\(String(reflecting: socket)))
            break
        except OSError as e:
            s.close()
            if attempt == 59: sys.exit("console: %s" % e)
            time.sleep(0.25)
    s.settimeout(0.25)
    def wait_for(pattern, t):
        end, out = time.time() + t, b""
        while time.time() < end:
            try:
                b = s.recv(65536)
                if not b: break
                out += b
            except socket.timeout:
                pass
            m = re.search(pattern, out)
            if m: return out, m
        return out, None
    def handshake():
        # A shell that answers first: an echo whose output (42) differs from the typed line.
        for attempt in range(15):
            s.sendall(b"\\necho \(ready)_$((6*7))\\n")
            _, answered = wait_for(rb"\(ready)_42", 2)
            if answered: return
        sys.exit("console: the shell did not answer within 30 s")
    # The command and its marker on one line, the command in a subshell (a background job
    # it starts is not the interactive shell's): the shell reads both or neither.
    line = b"stty -echo 2>/dev/null\\n( " + \(String(reflecting: command)).encode() + b" ) ; echo \(marker)=$?\\n"
    for attempt in range(3):
        handshake()
        s.sendall(line)
        end, out, done, quiet = time.time() + \(timeout), b"", None, time.time()
        while time.time() < end and not done:
            more, done = wait_for(rb"\(marker)=[0-9]+", 1)
            out += more
            done = re.search(rb"\(marker)=[0-9]+", out)
            if more: quiet = time.time()
            elif time.time() - quiet > 3:
                # Silence: an Enter shows whether a shell is still there. The guest's init
                # starts a new one (its banner) on Enter after the old one hung up, as it does
                # when a console client leaves, sometimes seconds later: the line was lost.
                s.sendall(b"\\n"); quiet = time.time()
            if not done and b"built-in shell" in out: break
        if done: break
    sys.stdout.write(out.decode("utf-8", "replace"))
    sys.exit(0 if done else 3)
    """
    let file = NSTemporaryDirectory() + "tapestry-vmexec-\(UInt32.random(in: 0...UInt32.max)).py"
    try? script.write(toFile: file, atomically: true, encoding: .utf8)
    defer { unlink(file) }
    // Up to 3 tries of `timeout` plus 30 s for the shell to answer, and 15 s to connect.
    let r = sh("/usr/bin/python3 \(file)", timeout: TimeInterval(3 * (timeout + 30) + 25))
    // The echoed command line holds the marker too, but never followed by a digit.
    guard r.succeeded, let range = r.stdout.range(of: "\(marker)=[0-9]", options: .regularExpression) else { return nil }
    // Without the shell's prompts (`HOST:DIR# `), its cursor-position queries, and the answer
    // to a readiness echo sent again while the first was on its way.
    return String(r.stdout[..<range.lowerBound])
        .replacingOccurrences(of: "[A-Za-z0-9-]+:[^ #]*# |\u{1B}\\[6n|\r|\(ready)_42\n?", with: "", options: .regularExpression)
}
