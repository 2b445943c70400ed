import Foundation
public import Logging

/// Metadata keys used in every Atrium log line. Patient identifiers never appear in logs.
public enum LogKey {
    /// The gRPC method, e.g. `/atrium.v1.Registry/Register`.
    public static let method = "rpc.method"
    /// The request ID the gateway assigned; it flows to every backend.
    public static let requestID = "request.id"
    /// The calling subscriber.
    public static let subscriberID = "subscriber.id"
    /// The service that logged the line.
    public static let service = "service"
    /// An image ID.
    public static let imageID = "image.id"
    /// A gRPC status code name.
    public static let status = "rpc.status"
    /// An underlying error, logged instead of being sent to the caller.
    public static let error = "error"
}

/// Writes one line per event to standard error: JSON objects (`format: .json`, for log shippers) or a
/// compact text form (`format: .text`, for people at a terminal).
public struct LineLogHandler: LogHandler {
    /// The output form.
    public enum Format: String, Sendable {
        case json
        case text
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let format: Format

    /// A handler for `label` at `level`.
    public init(label: String, level: Logger.Level, format: Format) {
        self.label = label
        self.logLevel = level
        self.format = format
    }

    /// Installs this handler for every logger in the process. Call once, from `main`.
    public static func bootstrap(level: Logger.Level, format: Format) {
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, level: level, format: format) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line: String
        switch format {
        case .json: line = jsonLine(event: event, metadata: merged)
        case .text: line = textLine(event: event, metadata: merged)
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    private func jsonLine(event: LogEvent, metadata: Logger.Metadata) -> String {
        var fields: [(String, String)] = [
            ("time", Self.timestamp()), ("level", event.level.rawValue), ("logger", label), ("message", event.message.description),
        ]
        for key in metadata.keys.sorted() { fields.append((key, metadata[key]!.description)) }
        return "{" + fields.map { "\(Self.quote($0.0)):\(Self.quote($0.1))" }.joined(separator: ",") + "}"
    }

    private func textLine(event: LogEvent, metadata: Logger.Metadata) -> String {
        let meta = metadata.keys.sorted().map { "\($0)=\(metadata[$0]!)" }.joined(separator: " ")
        return "\(Self.timestamp()) \(event.level.rawValue.uppercased()) \(label): \(event.message)\(meta.isEmpty ? "" : " " + meta)"
    }

    private static func timestamp() -> String {
        Date().formatted(.iso8601.year().month().day().timeZone(separator: .omitted).time(includingFractionalSeconds: true).timeSeparator(.colon))
    }

    /// A JSON string literal for `text`.
    private static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
