import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How QEMU runs guest code: hardware virtualisation through KVM, or TCG, QEMU's own binary
/// translator (slower, but it runs anywhere).
///
/// A device node is not proof of hardware virtualisation. On the machines this project runs
/// on, /dev/kvm exists and opens, yet it is PVM (the `kvm_pvm` module: KVM built on paging
/// tricks inside an already virtualised guest, without VT-x/AMD-V), under which a stock
/// guest kernel does not boot. What tells the truth is the CPU: `vmx` (Intel VT-x) or `svm`
/// (AMD-V) in /proc/cpuinfo. So KVM is chosen only when the CPU advertises one of them, the
/// device is usable, and the KVM behind it is not PVM; otherwise TCG, with the reason, which
/// the caller logs once (SPEC: "said once in the log").
public enum Accel: String, Codable, Sendable, CaseIterable {
    case kvm
    case tcg

    /// The pure decision. `hypervisorIsPVM` is nil when it could not be determined (no
    /// /sys/module), which does not veto KVM by itself: the CPU flags already rule out PVM's
    /// usual setting (a PVM host exposes no vmx/svm to its guests).
    public static func decide(cpuFlags: Set<String>, kvmDeviceUsable: Bool, hypervisorIsPVM: Bool?) -> (accel: Accel, reason: String) {
        let hardware = cpuFlags.contains("vmx") || cpuFlags.contains("svm")
        guard hardware else {
            let device = kvmDeviceUsable ? " (/dev/kvm exists but offers no hardware virtualisation)" : ""
            return (.tcg, "TCG: the CPU has no vmx/svm flag\(device)")
        }
        if hypervisorIsPVM == true {
            return (.tcg, "TCG: /dev/kvm is PVM (kvm_pvm), under which a stock kernel does not boot")
        }
        guard kvmDeviceUsable else {
            return (.tcg, "TCG: the CPU has \(cpuFlags.contains("vmx") ? "vmx" : "svm") but /dev/kvm is missing or unusable")
        }
        return (.kvm, "KVM: the CPU has \(cpuFlags.contains("vmx") ? "vmx" : "svm") and /dev/kvm is usable")
    }

    /// Probes this machine: /proc/cpuinfo's flags, whether /dev/kvm opens read-write and
    /// answers KVM_GET_API_VERSION with 12 (the only stable API version), and whether the
    /// kvm_pvm module is loaded.
    public static func probe() -> (accel: Accel, reason: String) {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        return decide(cpuFlags: cpuFlags(fromCPUInfo: cpuinfo), kvmDeviceUsable: kvmDeviceUsable(), hypervisorIsPVM: kvmIsPVM())
    }

    /// The `flags` of the first processor in /proc/cpuinfo text (all processors agree).
    public static func cpuFlags(fromCPUInfo text: String) -> Set<String> {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == "flags" else { continue }
            return Set(parts[1].split(separator: " ").map(String.init))
        }
        return []
    }

    /// /dev/kvm opens read-write and speaks API version 12.
    static func kvmDeviceUsable(path: String = "/dev/kvm") -> Bool {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let kvmGetAPIVersion: UInt = 0xAE00  // _IO(KVMIO, 0x00)
        return ioctl(fd, kvmGetAPIVersion, 0) == 12
    }

    /// true when the kvm_pvm module is loaded, false when /sys/module is readable and it is
    /// not, nil when /sys/module cannot be read.
    static func kvmIsPVM(sysModule: String = "/sys/module") -> Bool? {
        let fm = FileManager.default
        if fm.fileExists(atPath: sysModule + "/kvm_pvm") { return true }
        return fm.fileExists(atPath: sysModule) ? false : nil
    }
}
