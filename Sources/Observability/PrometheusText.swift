/// One value of a metric sample: counters stay exact integers, gauges may be fractional.
public enum MetricValue: Equatable, Sendable {
    case integer(UInt64)
    case double(Double)

    /// The value as the text format writes it (`+Inf`, `-Inf`, `NaN` for the specials).
    var text: String {
        switch self {
        case .integer(let v): return String(v)
        case .double(let d):
            if d.isNaN { return "NaN" }
            if d.isInfinite { return d < 0 ? "-Inf" : "+Inf" }
            if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
            return String(d)
        }
    }
}

/// The metric types of the text format that Tapestry uses.
public enum MetricType: String, Sendable {
    /// Only goes up (reset on restart); its name ends in `_total`.
    case counter
    /// Goes up and down.
    case gauge
}

/// A metric family: `# HELP`, `# TYPE` and its samples, in Prometheus text exposition
/// format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
public struct MetricFamily: Equatable, Sendable {
    /// One line: labels and value.
    public struct Sample: Equatable, Sendable {
        /// Label pairs in output order. Names match `[a-zA-Z_][a-zA-Z0-9_]*` and do not start
        /// with `__`; values are any UTF-8 (escaped on output).
        public var labels: [Label]
        /// The sample value.
        public var value: MetricValue
        public init(_ labels: [Label] = [], _ value: MetricValue) { self.labels = labels; self.value = value }
    }
    /// A label name and value.
    public struct Label: Equatable, Sendable {
        /// `[a-zA-Z_][a-zA-Z0-9_]*`.
        public var name: String
        /// Any UTF-8 (escaped on output).
        public var value: String
        public init(_ name: String, _ value: String) { self.name = name; self.value = value }
    }

    /// Matches `[a-zA-Z_:][a-zA-Z0-9_:]*`; counters end in `_total` (checked by `validate`).
    public var name: String
    /// One line of help (escaped on output).
    public var help: String
    /// counter or gauge.
    public var type: MetricType
    /// The family's lines.
    public var samples: [Sample]

    public init(name: String, help: String, type: MetricType, samples: [Sample]) {
        self.name = name; self.help = help; self.type = type; self.samples = samples
    }

    /// Problems with names (a programming error in whoever built the family): an invalid
    /// metric or label name, a counter without `_total`, a label given twice on one sample.
    public func validate() -> [String] {
        var out: [String] = []
        if !PrometheusText.isValidMetricName(name) { out.append("invalid metric name '\(name)'") }
        if type == .counter && !name.hasSuffix("_total") { out.append("counter '\(name)' does not end in _total") }
        for s in samples {
            var seen: Set<String> = []
            for l in s.labels {
                if !PrometheusText.isValidLabelName(l.name) { out.append("\(name): invalid label name '\(l.name)'") }
                if !seen.insert(l.name).inserted { out.append("\(name): label '\(l.name)' repeated") }
            }
        }
        return out
    }
}

/// The Prometheus text exposition format, version 0.0.4.
public enum PrometheusText {
    /// The Content-Type of a response in this format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Renders families in order, each as HELP, TYPE and its samples; a family without
    /// samples is left out (Prometheus and promtool accept it, but it says nothing).
    public static func render(_ families: [MetricFamily]) -> String {
        var out = ""
        out.reserveCapacity(families.count * 200)
        for f in families where !f.samples.isEmpty {
            out += "# HELP \(f.name) \(escapeHelp(f.help))\n"
            out += "# TYPE \(f.name) \(f.type.rawValue)\n"
            for s in f.samples {
                out += f.name
                if !s.labels.isEmpty {
                    out += "{"
                    for (i, l) in s.labels.enumerated() {
                        if i > 0 { out += "," }
                        out += l.name + "=\"" + escapeLabelValue(l.value) + "\""
                    }
                    out += "}"
                }
                out += " " + s.value.text + "\n"
            }
        }
        return out
    }

    /// HELP text: backslash and line feed escaped (`\\`, `\n`).
    public static func escapeHelp(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Label values: backslash, double quote and line feed escaped (`\\`, `\"`, `\n`).
    public static func escapeLabelValue(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    public static func isValidMetricName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first else { return false }
        func letter(_ c: Unicode.Scalar) -> Bool { (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || c == ":" }
        return letter(first) && s.unicodeScalars.allSatisfy { letter($0) || ($0 >= "0" && $0 <= "9") }
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
    public static func isValidLabelName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, !s.hasPrefix("__") else { return false }
        func letter(_ c: Unicode.Scalar) -> Bool { (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" }
        return letter(first) && s.unicodeScalars.allSatisfy { letter($0) || ($0 >= "0" && $0 <= "9") }
    }
}
