import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Small wrappers for thread housekeeping the datapath needs.
public enum ThreadControl {
    /// Names the calling thread for `top -H` / `ps -L` (`prctl(PR_SET_NAME)`, at most 15
    /// bytes; Foundation's `Thread.name` does not reach the kernel).
    public static func setName(_ name: String) { _ = cl_set_thread_name(name) }
    /// Gives the CPU to another runnable task (`sched_yield(2)`).
    @inline(__always) public static func yield() { sched_yield() }
    /// Sleeps the calling thread (`usleep(3)`).
    public static func sleep(microseconds: UInt32) { usleep(microseconds) }
}
