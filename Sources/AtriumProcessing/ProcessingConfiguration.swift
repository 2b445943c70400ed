public import AtriumCore
public import AtriumRuntime
import Foundation

/// A processing instance's settings.
///
/// Keys (besides the runtime's, see ``RuntimeConfiguration``):
/// - `ATRIUM_INSTANCE_ID`: the instance's name, stable across restarts (default `<host name>:<port>`). Job IDs
///   end with it, so the gateway can route a job's calls to the instance that owns it.
/// - `ATRIUM_PROCESSING_STATE_DIR`: this instance's own state: its job database, the inline inputs of queued
///   jobs, and job results (default `<data>/processing/<instance ID>`). Instances never share it.
/// - `ATRIUM_BLOB_DIR`: the registry's blob store, opened read-only (default `<data>/registry/blobs`).
/// - `ATRIUM_PROCESSING_WORKERS`: inputs processed at once (default: the number of cores).
/// - `ATRIUM_PROCESSING_QUEUE_LIMIT`: queued jobs and waiting calls before new work is refused with
///   RESOURCE_EXHAUSTED (default 1000).
/// - `ATRIUM_PROCESSING_RESULT_HOURS`: how long a job's results can be fetched with GetJobResult (default 168).
public struct ProcessingConfiguration: Sendable {
    public var instanceID: String
    public var stateDirectory: String
    public var blobDirectory: String
    public var workers: Int
    public var queueLimit: Int
    public var resultRetention: Duration
    /// The software version results and reports name.
    public var softwareVersion: String

    public var databasePath: String { "\(stateDirectory)/processing.sqlite" }
    public var usageOutboxPath: String { "\(stateDirectory)/usage-outbox.sqlite" }
    public var inputDirectory: String { "\(stateDirectory)/inputs" }
    public var resultDirectory: String { "\(stateDirectory)/results" }

    /// Explicit settings; `workers` 0 means one per core.
    public init(
        instanceID: String,
        stateDirectory: String,
        blobDirectory: String,
        workers: Int = 0,
        queueLimit: Int = 1000,
        resultRetention: Duration = .seconds(7 * 24 * 3600),
        softwareVersion: String = ProcessingConfiguration.defaultSoftwareVersion
    ) {
        self.instanceID = instanceID
        self.stateDirectory = stateDirectory
        self.blobDirectory = blobDirectory
        self.workers = workers > 0 ? workers : ProcessInfo.processInfo.activeProcessorCount
        self.queueLimit = max(1, queueLimit)
        self.resultRetention = resultRetention
        self.softwareVersion = softwareVersion
    }

    /// Settings from the process configuration.
    public init(runtime: RuntimeConfiguration, values: ConfigValues) throws(ConfigurationError) {
        let instanceID = values.string("ATRIUM_INSTANCE_ID", default: "\(ProcessInfo.processInfo.hostName):\(runtime.listen.port)")
        guard (1...64).contains(instanceID.utf8.count), instanceID.utf8.allSatisfy(Self.isInstanceIDByte) else {
            throw ConfigurationError(key: "ATRIUM_INSTANCE_ID", problem: "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'")
        }
        self.init(
            instanceID: instanceID,
            stateDirectory: values.string("ATRIUM_PROCESSING_STATE_DIR", default: "\(runtime.serviceDirectory)/\(instanceID.replacingOccurrences(of: ":", with: "_"))"),
            blobDirectory: runtime.blobDirectory,
            workers: try values.int("ATRIUM_PROCESSING_WORKERS", default: ProcessInfo.processInfo.activeProcessorCount, range: 1...256),
            queueLimit: try values.int("ATRIUM_PROCESSING_QUEUE_LIMIT", default: 1000, range: 1...1_000_000),
            resultRetention: .seconds(3600 * (try values.int("ATRIUM_PROCESSING_RESULT_HOURS", default: 168, range: 1...(24 * 365))))
        )
    }

    /// The version results and load reports carry.
    public static let defaultSoftwareVersion = "atrium-processing 1.0"

    static func isInstanceIDByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: ":"):
            true
        default: false
        }
    }
}
