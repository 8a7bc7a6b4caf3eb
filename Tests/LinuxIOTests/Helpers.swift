import Foundation
import TestSupport

/// A unique, short name for a namespace or link this test creates: "tio" + random base36.
/// Every name in this target starts with "tio" so leftovers are easy to attribute.
func uniqueName(_ role: String = "") -> String {
    Capabilities.uniquePrefix("tio") + String(Int.random(in: 0..<1296), radix: 36) + role
}

/// Parses `ip -j …` output.
func ipJSON(_ command: String) -> [[String: Any]] {
    let r = sh(command)
    guard r.succeeded, let data = r.stdout.data(using: .utf8),
          let array = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else { return [] }
    return array
}

/// The rx packet counter of `link` in namespace `ns` (`ip -n NS -s -j link show LINK`).
func rxPackets(_ link: String, in ns: String) -> Int? {
    guard let entry = ipJSON("ip -n \(ns) -s -j link show \(link)").first,
          let stats = entry["stats64"] as? [String: Any], let rx = stats["rx"] as? [String: Any] else { return nil }
    return (rx["packets"] as? NSNumber)?.intValue
}
