/// One region of the frontend's memory table as mapped into this process.
///
/// SET_MEM_TABLE describes each region three ways (vhost-user.rst, "Memory region
/// description"): its guest-physical address (descriptors use these), its address in the
/// frontend's own address space (`userspace_addr`: SET_VRING_ADDR uses these) and the
/// offset of its first byte in the passed fd. `base` is where that first byte lives here.
public struct GuestMemoryRegion: Equatable {
    /// First guest-physical address of the region.
    public var guestPhysicalAddress: UInt64
    /// Length in bytes.
    public var size: UInt64
    /// First address of the region in the frontend's address space.
    public var frontendAddress: UInt64
    /// The region's first byte in this process.
    public var base: UnsafeMutableRawPointer

    public init(guestPhysicalAddress: UInt64, size: UInt64, frontendAddress: UInt64, base: UnsafeMutableRawPointer) {
        self.guestPhysicalAddress = guestPhysicalAddress
        self.size = size
        self.frontendAddress = frontendAddress
        self.base = base
    }
}

/// A read-only view of a memory table: translates guest-physical and frontend addresses to
/// pointers in this process, with full bounds checks.
///
/// A translation succeeds only when the whole range `[address, address + length)` lies inside
/// one region: a buffer straddling two regions is refused like one outside the table (QEMU's
/// regions are separated by holes, so a real driver never builds one). Arithmetic never
/// overflows: `address - start < size && length <= size - (address - start)`.
///
/// The regions live in storage owned by whoever mapped them (`VhostMemoryMap`, or a test's
/// fake memory); the view is valid while that owner is alive. At most
/// `GuestMemory.maxRegions` regions (VHOST_MEMORY_BASELINE_NREGIONS).
public struct GuestMemory {
    /// Most regions in one SET_MEM_TABLE.
    public static let maxRegions = 8
    let regions: UnsafePointer<GuestMemoryRegion>?
    /// Number of regions.
    public let count: Int

    /// A view over `count` regions at `regions` (owned by the caller).
    public init(regions: UnsafePointer<GuestMemoryRegion>?, count: Int) {
        self.regions = regions
        self.count = regions == nil ? 0 : count
    }

    /// The empty table: every translation fails.
    public static let empty = GuestMemory(regions: nil, count: 0)

    /// The pointer for guest-physical `[address, address + length)`, or nil when the range is
    /// not inside one region.
    @inline(__always)
    public func translate(guestPhysical address: UInt64, length: UInt64) -> UnsafeMutableRawPointer? {
        guard let r = regions else { return nil }
        for i in 0..<count {
            let region = r[i]
            let offset = address &- region.guestPhysicalAddress
            if address >= region.guestPhysicalAddress && offset < region.size && length <= region.size - offset {
                return region.base + Int(offset)
            }
        }
        return nil
    }

    /// The pointer for `[address, address + length)` in the frontend's address space (the
    /// ring addresses of SET_VRING_ADDR), or nil.
    public func translate(frontend address: UInt64, length: UInt64) -> UnsafeMutableRawPointer? {
        guard let r = regions else { return nil }
        for i in 0..<count {
            let region = r[i]
            let offset = address &- region.frontendAddress
            if address >= region.frontendAddress && offset < region.size && length <= region.size - offset {
                return region.base + Int(offset)
            }
        }
        return nil
    }

    /// The guest-physical address of frontend address `address` (the used ring's address for
    /// dirty logging when the frontend gave none), or nil.
    public func guestPhysical(frontend address: UInt64) -> UInt64? {
        guard let r = regions else { return nil }
        for i in 0..<count {
            let region = r[i]
            let offset = address &- region.frontendAddress
            if address >= region.frontendAddress && offset < region.size { return region.guestPhysicalAddress + offset }
        }
        return nil
    }
}

/// The dirty-page bitmap of a live migration (VHOST_F_LOG_ALL; vhost-user.rst "Migration"):
/// bit `n` stands for guest-physical page `n` (4 KiB pages, `VHOST_LOG_PAGE`), bits in
/// little-endian byte order. The backend sets a bit for every guest page it writes; the
/// frontend reads and clears them while it copies memory to the destination.
///
/// Bits are set with an atomic OR: QEMU shares one log between all vhost devices of a VM,
/// so two ports (possibly on two datapath threads) may set bits in the same byte. A page
/// beyond the log's end is not logged (the frontend sized the log for its memory; such a
/// page cannot be guest memory the frontend migrates).
public struct DirtyLog {
    /// Bytes per logged page.
    public static let pageSize: UInt64 = 4096
    public let bitmap: UnsafeMutableRawPointer
    /// Bitmap length in bytes.
    public let size: Int

    public init(bitmap: UnsafeMutableRawPointer, size: Int) {
        self.bitmap = bitmap
        self.size = size
    }

    /// Marks every page of guest-physical `[address, address + length)` dirty.
    @inline(__always)
    public func mark(guestPhysical address: UInt64, length: UInt64) {
        guard length > 0 else { return }
        var page = address / DirtyLog.pageSize
        let last = (address &+ (length - 1)) / DirtyLog.pageSize
        while page <= last {
            let byte = Int(truncatingIfNeeded: page >> 3)
            if byte < 0 || byte >= size { return }
            setBit(bitmap + byte, UInt8(1) << UInt8(page & 7))
            page += 1
        }
    }

    /// Whether page `page` is marked (tests).
    public func isMarked(page: UInt64) -> Bool {
        let byte = Int(page >> 3)
        guard byte < size else { return false }
        return bitmap.load(fromByteOffset: byte, as: UInt8.self) & (UInt8(1) << UInt8(page & 7)) != 0
    }
}

#if canImport(CVhost)
import CVhost
@inline(__always) private func setBit(_ p: UnsafeMutableRawPointer, _ bit: UInt8) {
    cv_atomic_or8(p.assumingMemoryBound(to: UInt8.self), bit)
}
#else
// Fuzz builds compile the pure files alone, single-threaded.
@inline(__always) private func setBit(_ p: UnsafeMutableRawPointer, _ bit: UInt8) {
    p.storeBytes(of: p.load(as: UInt8.self) | bit, as: UInt8.self)
}
#endif
