/// Whether a VM whose QEMU process ended is started again: a QEMU guest's `restart:` key in
/// the topology (`never`, `on-failure`, `always`; the raw values are the YAML spelling), and
/// what the VM runner's supervisor applies after each exit
/// (`RestartPolicy.restarts(after:stopRequested:)` in VMRunner).
///
/// One type for both: the topology and the VM runner used to have a twin
/// each, converted by raw value. It lives here, below both, so that neither Topology nor
/// VMRunner depends on the other (docs/ARCHITECTURE.md, "Layers").
///
/// A stop the user asked for (`tapestry vm stop`, `down`, a reload removing the VM) is never a
/// reason to restart, whatever the policy; neither is a failed first boot (a guest that never
/// became ready would only fail again: the error goes to the user instead).
public enum RestartPolicy: String, Codable, Sendable, CaseIterable {
    /// Never restart (the default for guests that are not VMs, where it means nothing).
    case never
    /// Restart after a non-zero exit or a death by signal; a guest that powered itself off
    /// (exit 0) stays off.
    case onFailure = "on-failure"
    /// Restart after every exit the user did not ask for.
    case always
}
