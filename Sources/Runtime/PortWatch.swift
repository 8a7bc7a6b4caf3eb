import Core
import Foundation
import LinuxIO
import Netlink
import Topology

/// Notices guest ports whose device left them without the datapath seeing an error: a
/// netns guest's NIC moved to another namespace (its TAP still works, elsewhere), or a VM's
/// TAP netdev deleted while QEMU holds the TAP (the AF_PACKET socket reports ENETDOWN only
/// once). Every 2 s, on its own thread (netlink queries, never under the datapath lock), it
/// checks each guest port's device and marks missing ones down (`Datapath.setPortDown`);
/// the datapath itself catches the other ways a port vanishes (EPOLLERR on a TAP whose
/// netdev was deleted, also when the guest's namespace was deleted).
extension Fabric {
    func startPortWatch() {
        portWatchStop.withLock { portWatchStopping = false }
        let t = Thread { [weak self] in
            while let self, !self.portWatchStop.withLock({ self.portWatchStopping }) {
                self.checkGuestPorts()
                for _ in 0..<20 where !self.portWatchStop.withLock({ self.portWatchStopping }) { ThreadControl.sleep(microseconds: 100_000) }
            }
            self?.portWatchDone.signal()
        }
        t.name = "tapestry-portwatch"
        portWatchRunning = true
        t.start()
    }

    func stopPortWatch() {
        guard portWatchRunning else { return }
        portWatchStop.withLock { portWatchStopping = true }
        portWatchDone.wait()
        portWatchRunning = false
    }

    /// One round: every guest NIC's device where it belongs.
    func checkGuestPorts() {
        guard let dp = datapath else { return }
        let t = topology
        let ports = reloading.withLock { portsByName }
        for g in t.guests {
            switch g.kind {
            case .netns:
                guard let inside = try? NetlinkSocket(namespace: g.name) else {
                    for nic in g.nics { dp.setPortDown(switch: nic.switchName, port: nic.portName, reason: .deviceGone) }
                    continue
                }
                for nic in g.nics where (try? inside.linkExists(named: nic.interfaceName)) == false {
                    dp.setPortDown(switch: nic.switchName, port: nic.portName, reason: .deviceMoved)
                }
            case .qemu, .vhostUser:
                for nic in g.nics {
                    if let p = ports[nic.portName] as? PacketPort, !p.deviceExists {
                        dp.setPortDown(switch: nic.switchName, port: nic.portName, reason: .deviceGone)
                    }
                }
            }
        }
    }
}
