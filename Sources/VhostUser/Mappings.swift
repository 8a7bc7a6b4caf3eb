import CVhost
import LinuxIO
#if canImport(Glibc)
import Glibc
#endif

/// Owns one descriptor received from a frontend (a kick, call or error eventfd); closes it
/// when the last configuration holding it goes away, so a datapath thread that still uses
/// the old configuration never writes to a reused descriptor number.
final class OwnedFD {
    let fd: Int32
    init(_ fd: Int32) { self.fd = fd }
    deinit { Glibc.close(fd) }
}

/// A frontend's memory table mapped into this process (SET_MEM_TABLE): one shared mapping
/// per region fd, unmapped when the last configuration using it is released.
///
/// Each region `i` is mapped from fd `i` as `[0, mmap_offset + size)` rounded up to the
/// fd's block size (the huge page size of a hugetlbfs fd), and starts at `mmap_offset`
/// inside that mapping (as DPDK's vhost library does: the offset need not be page-aligned).
/// The fds are closed once mapped.
final class VhostMemoryMap {
    let regions: UnsafeMutablePointer<GuestMemoryRegion>
    let count: Int
    private var mappings: [(UnsafeMutableRawPointer, UInt64)] = []

    /// The view the rings translate through (valid while `self` lives).
    var memory: GuestMemory { GuestMemory(regions: regions, count: count) }

    /// Maps every region; on failure unmaps what was mapped and throws. Closes `fds`.
    init(_ descriptions: [MemoryRegionDescription], fds: [Int32]) throws {
        defer { for fd in fds { Glibc.close(fd) } }
        precondition(descriptions.count == fds.count && descriptions.count <= GuestMemory.maxRegions)
        regions = .allocate(capacity: max(1, descriptions.count))
        count = descriptions.count
        do {
            for (i, d) in descriptions.enumerated() {
                let block = UInt64(max(4096, cv_block_size(fds[i])))
                let (total, overflow) = d.mmapOffset.addingReportingOverflow(d.size)
                guard !overflow, total <= UInt64(Int.max) - block else {
                    throw SystemError(operation: "mmap", subject: "memory region \(i)", errno: EINVAL)
                }
                let length = (total + block - 1) / block * block
                var base: UnsafeMutableRawPointer? = nil
                try Syscall.require("mmap", subject: "memory region \(i) (\(d.size) bytes)") { cv_mmap_shared(fds[i], length, 0, &base) }
                mappings.append((base!, length))
                (regions + i).initialize(to: GuestMemoryRegion(guestPhysicalAddress: d.guestPhysicalAddress, size: d.size,
                                                               frontendAddress: d.frontendAddress, base: base! + Int(d.mmapOffset)))
            }
        } catch {
            for (p, n) in mappings { _ = cv_munmap(p, n) }
            mappings = []
            regions.deallocate()
            throw error
        }
    }

    deinit {
        for (p, n) in mappings { _ = cv_munmap(p, n) }
        regions.deallocate()
    }
}

/// The dirty-page log of a live migration (SET_LOG_BASE with LOG_SHMFD): `size` bytes at
/// `offset` of the frontend's fd, mapped shared; unmapped when released.
final class VhostLogMap {
    private let mapping: UnsafeMutableRawPointer
    private let length: UInt64
    let log: DirtyLog

    init(fd: Int32, size: UInt64, offset: UInt64) throws {
        defer { Glibc.close(fd) }
        let (total, overflow) = offset.addingReportingOverflow(size)
        guard size > 0, !overflow, total < UInt64(Int.max) else {
            throw SystemError(operation: "mmap", subject: "dirty log (\(size) bytes at \(offset))", errno: EINVAL)
        }
        var base: UnsafeMutableRawPointer? = nil
        try Syscall.require("mmap", subject: "dirty log (\(size) bytes)") { cv_mmap_shared(fd, total, 0, &base) }
        mapping = base!
        length = total
        log = DirtyLog(bitmap: base! + Int(offset), size: Int(size))
    }

    deinit { _ = cv_munmap(mapping, length) }
}
