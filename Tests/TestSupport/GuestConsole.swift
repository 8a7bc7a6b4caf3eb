import Foundation

/// Runs `command` in a QEMU guest's shell through its serial console socket (`socket`, the
/// guest image's busybox shell, which restarts whenever a console client leaves) and returns
/// what it printed without prompts, or nil when it did not finish within `timeout` seconds.
/// Waits for a prompt before typing; background commands must detach from the console
/// (`setsid sh -c '…' </dev/null >/dev/null 2>&1 &`) to outlive the shell.
public func guestConsoleRun(socket: String, command: String, timeout: Int = 30) -> String? {
    let marker = "__tapestry_done_\(UInt32.random(in: 0...UInt32.max))"
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
    # A shell prompt first (the console's shell restarts after a client leaves).
    for _ in range(10):
        s.sendall(b"\\n")
        _, prompt = wait_for(rb"# ", 2)
        if prompt: break
    time.sleep(0.3)
    s.sendall(b"stty -echo 2>/dev/null\\n" + \(String(reflecting: command)).encode() + b"\\necho \(marker)=$?\\n")
    out, done = wait_for(rb"\(marker)=[0-9]+", \(timeout))
    sys.stdout.write(out.decode("utf-8", "replace"))
    sys.exit(0 if done else 3)
    """
    let file = NSTemporaryDirectory() + "tapestry-vmexec-\(UInt32.random(in: 0...UInt32.max)).py"
    try? script.write(toFile: file, atomically: true, encoding: .utf8)
    defer { unlink(file) }
    // Beyond `timeout`: up to 15 s to connect and 20 s for a prompt, then a margin.
    let r = sh("/usr/bin/python3 \(file)", timeout: TimeInterval(timeout + 45))
    // The echoed command line holds the marker too, but never followed by a digit.
    guard r.succeeded, let range = r.stdout.range(of: "\(marker)=[0-9]", options: .regularExpression) else { return nil }
    // Without the shell's prompts (`HOST:DIR# `) and its cursor-position queries.
    return String(r.stdout[..<range.lowerBound])
        .replacingOccurrences(of: "[A-Za-z0-9-]+:[^ #]*# |\u{1B}\\[6n|\r", with: "", options: .regularExpression)
}
