import Foundation
import TestSupport

/// A unique, short name for a namespace or link this test creates: "tio" + random base36.
/// Every name in this target starts with "tio" so leftovers are easy to attribute.
func uniqueName(_ role: String = "") -> String {
    Capabilities.uniquePrefix("tio") + String(Int.random(in: 0..<1296), radix: 36) + role
}


/// The rx packet counter of `link` in namespace `ns` (`ip -n NS -s -j link show LINK`).
func rxPackets(_ link: String, in ns: String) -> Int? {
    guard let entry = ipJSON("ip -n \(ns) -s -j link show \(link)").first,
          let stats = entry["stats64"] as? [String: Any], let rx = stats["rx"] as? [String: Any] else { return nil }
    return (rx["packets"] as? NSNumber)?.intValue
}
