import Foundation

/// The raw `ATRIUM_*` settings of a process: the environment layered over an optional env-file.
///
/// Only the executable builds one of these (from the real environment); every service reads its typed
/// `Configuration` out of it, so tests can pass plain dictionaries. The file format is the one compose's
/// `env_file` uses: `KEY=value` per line, `#` comments, optional single or double quotes around the value.
public struct ConfigValues: Sendable {
    /// The merged key/value pairs.
    public let values: [String: String]

    /// Values from a dictionary, e.g. in tests.
    public init(_ values: [String: String] = [:]) {
        self.values = values
    }

    /// The environment layered over the file named by `ATRIUM_CONFIG_FILE`, if set. Only `ATRIUM_*` keys count.
    public static func fromEnvironment(_ environment: [String: String]) throws(ConfigurationError) -> ConfigValues {
        var merged: [String: String] = [:]
        if let path = environment["ATRIUM_CONFIG_FILE"], !path.isEmpty {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ConfigurationError(key: "ATRIUM_CONFIG_FILE", problem: "cannot read \(path)")
            }
            merged = try parseEnvFile(text, path: path)
        }
        for (key, value) in environment where key.hasPrefix("ATRIUM_") {
            merged[key] = value
        }
        return ConfigValues(merged)
    }

    /// Parses env-file text into key/value pairs.
    public static func parseEnvFile(_ text: String, path: String = "<config>") throws(ConfigurationError) -> [String: String] {
        var result: [String: String] = [:]
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = rawLine.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingWhitespace() }
            guard let equals = line.firstIndex(of: "=") else {
                throw ConfigurationError(key: path, problem: "line \(number + 1) is not KEY=value")
            }
            let key = String(line[..<equals]).trimmingWhitespace()
            var value = String(line[line.index(after: equals)...]).trimmingWhitespace()
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = String(value.dropFirst().dropLast())
            }
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw ConfigurationError(key: path, problem: "line \(number + 1) has an invalid key")
            }
            result[key] = value
        }
        return result
    }

    /// The string value of `key`, or `nil` when absent or empty.
    public func string(_ key: String) -> String? {
        guard let value = values[key], !value.isEmpty else { return nil }
        return value
    }

    /// The string value of `key`, or `defaultValue`.
    public func string(_ key: String, default defaultValue: String) -> String {
        string(key) ?? defaultValue
    }

    /// An integer value within `range`, or `defaultValue` when absent.
    public func int(_ key: String, default defaultValue: Int, range: ClosedRange<Int> = Int.min...Int.max) throws(ConfigurationError) -> Int {
        guard let text = string(key) else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw ConfigurationError(key: key, problem: "expected an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return value
    }

    /// A boolean value (`true/false/1/0/yes/no`), or `defaultValue` when absent.
    public func bool(_ key: String, default defaultValue: Bool) throws(ConfigurationError) -> Bool {
        guard let text = string(key)?.lowercased() else { return defaultValue }
        switch text {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError(key: key, problem: "expected true or false, got '\(text)'")
        }
    }

    /// A `host:port` address, or `defaultValue` when absent.
    public func address(_ key: String, default defaultValue: HostAndPort?) throws(ConfigurationError) -> HostAndPort? {
        guard let text = string(key) else { return defaultValue }
        guard let address = HostAndPort(text) else {
            throw ConfigurationError(key: key, problem: "expected host:port, got '\(text)'")
        }
        return address
    }

    /// A comma-separated list of `host:port` addresses, or `defaultValue` when absent.
    public func addresses(_ key: String, default defaultValue: [HostAndPort]) throws(ConfigurationError) -> [HostAndPort] {
        guard let text = string(key) else { return defaultValue }
        var result: [HostAndPort] = []
        for item in text.split(separator: ",") {
            guard let address = HostAndPort(String(item).trimmingWhitespace()) else {
                throw ConfigurationError(key: key, problem: "expected host:port[,host:port...], got '\(text)'")
            }
            result.append(address)
        }
        return result
    }
}

/// A network address as configured: a host name or IP literal and a port.
public struct HostAndPort: Sendable, Hashable, CustomStringConvertible {
    /// Host name, IPv4 literal, or IPv6 literal without brackets.
    public var host: String
    /// TCP port, 0 to 65535 (0 asks the system for a free one when listening).
    public var port: Int

    /// An address from its parts.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[v6]:port`.
    public init?(_ text: String) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard !hostPart.isEmpty, let port = Int(portPart), (0...65535).contains(port) else { return nil }
        self.host = String(hostPart)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A configuration value that is missing or malformed; the process refuses to start with this message.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The offending key (or file).
    public var key: String
    /// What is wrong with it.
    public var problem: String

    /// An error about `key`.
    public init(key: String, problem: String) {
        self.key = key
        self.problem = problem
    }

    public var description: String { "configuration \(key): \(problem)" }
}

extension StringProtocol {
    /// The string without leading and trailing spaces, tabs and carriage returns.
    package func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
