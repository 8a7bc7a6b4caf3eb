import Model

/// The host-side name of a NIC's TAP by the switch's rule (`Fabric.hostTAPName`: `tp` and 8
/// hex digits of FNV-1a over "topology/guest/index"), for tests that look a TAP up by name
/// without catching those of tests running beside them.
public func expectedHostTAPName(topology: String, guest: String, nic: Int) -> String {
    let hex = String(FNV1a.hash32("\(topology)/\(guest)/\(nic)"), radix: 16)
    return "tp" + String(repeating: "0", count: 8 - hex.count) + hex
}
