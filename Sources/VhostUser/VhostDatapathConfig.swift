/// What the datapath needs to run a port's rings: an immutable snapshot the control thread
/// publishes after every change (memory table, ring start or stop, features, log, RARP).
final class VhostDatapathConfig {
    /// Increases with every publication.
    let epoch: UInt64
    /// Ring 0 (the guest's receive queue: we write) and ring 1 (its transmit queue: we read),
    /// when running.
    let rx: VhostRingConfig?
    let tx: VhostRingConfig?
    /// Keep the mappings the rings point into alive while this snapshot is in use.
    let memory: VhostMemoryMap?
    let log: VhostLogMap?
    /// The negotiated virtio-net features (SET_FEATURES).
    let features: UInt64
    /// MRG_RXBUF negotiated.
    let mergeable: Bool
    /// The guest's virtio-net header: 12 bytes (VERSION_1 or MRG_RXBUF), else 10.
    let guestHeaderSize: Int
    /// Offloads the guest accepts on receive (GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN).
    let acceptsCSUM: Bool, acceptsTSO4: Bool, acceptsTSO6: Bool, acceptsECN: Bool
    /// A RARP to hand to the switch (SEND_RARP) and its serial (new when it changes).
    let rarp: [UInt8]?
    let rarpSerial: UInt64

    init(epoch: UInt64, rx: VhostRingConfig?, tx: VhostRingConfig?, memory: VhostMemoryMap?, log: VhostLogMap?,
         features: UInt64, rarp: [UInt8]?, rarpSerial: UInt64) {
        self.epoch = epoch
        self.rx = rx
        self.tx = tx
        self.memory = memory
        self.log = log
        self.features = features
        mergeable = features & VirtioFeature.mrgRXBuf != 0
        guestHeaderSize = features & (VirtioFeature.version1 | VirtioFeature.mrgRXBuf) != 0 ? VirtioNetHeader.size : VirtioNetHeader.legacySize
        acceptsCSUM = features & VirtioFeature.guestCSUM != 0
        acceptsTSO4 = features & VirtioFeature.guestTSO4 != 0
        acceptsTSO6 = features & VirtioFeature.guestTSO6 != 0
        acceptsECN = features & VirtioFeature.guestECN != 0
        self.rarp = rarp
        self.rarpSerial = rarpSerial
    }

    static let empty = VhostDatapathConfig(epoch: 0, rx: nil, tx: nil, memory: nil, log: nil, features: 0, rarp: nil, rarpSerial: 0)
}

/// One running ring inside a `VhostDatapathConfig`.
final class VhostRingConfig {
    let queue: Virtqueue
    let progress: VirtqueueProgressBox
    /// Kick eventfd (nil: the frontend polls-mode ring without kicks) and call eventfd.
    let kick: OwnedFD?
    let call: OwnedFD?
    init(queue: Virtqueue, progress: VirtqueueProgressBox, kick: OwnedFD?, call: OwnedFD?) {
        self.queue = queue
        self.progress = progress
        self.kick = kick
        self.call = call
    }
}

/// Counters of one vhost-user port, by name. Resets and drops the switch's own counters do
/// not see: ring faults, protocol errors, frames refused inside the port.
public struct VhostPortStatistics: Equatable, Sendable {
    /// Port resets by reason: the `VirtqueueFault` names and `protocol-error`.
    public var resets: [String: UInt64]
    /// Frames dropped inside the port by reason: `tx-oversize` (a guest chain longer than the
    /// switch's buffer), `tx-runt` (shorter than the virtio-net header), `rx-too-large`
    /// (without MRG_RXBUF the guest's buffer was too short), `rx-offload-malformed` (a GSO
    /// or partial-checksum frame for a guest without that offload whose headers software
    /// segmentation refuses), `rx-segments-lost` (segments of a frame cut in software that
    /// found the guest's ring full after the first went in).
    public var drops: [String: UInt64]
    /// RARPs handed to the switch after SEND_RARP.
    public var rarps: UInt64
    /// Connections made (accepted or connected) and lost.
    public var connections: UInt64
    public var disconnects: UInt64
    /// Dirty-page logs mapped (SET_LOG_BASE: a live migration started).
    public var dirtyLogs: UInt64
    /// Frames the port finished in software for a guest that did not negotiate the offload
    /// (not drops): GSO frames cut into wire segments, partial checksums completed.
    public var segmentedInSoftware: UInt64 = 0
    public var checksummedInSoftware: UInt64 = 0
}
