public import AtriumCore
public import AtriumRuntime
import Foundation

/// Delivery's settings.
///
/// Keys (besides the runtime's, see ``RuntimeConfiguration``):
/// - `ATRIUM_BLOB_DIR`: the registry's blob store, opened read-only (default `<data>/registry/blobs`).
/// - `ATRIUM_DELIVERY_VARIANT_DIR`: delivery's own blob store of transcoded variants (default
///   `<data>/delivery/variants`). It is a cache: deleting it (with `delivery.sqlite`'s `variant` rows) only
///   costs transcoding again.
/// - `ATRIUM_DELIVERY_MAX_TRANSCODE_BYTES`: the largest stored object delivery transcodes in memory (default
///   512 MiB); a larger one is delivered in its original encoding, with a note saying why.
public struct DeliveryConfiguration: Sendable {
    /// Delivery's SQLite file: print jobs, inboxes, the variant index.
    public var databasePath: String
    /// The usage outbox's SQLite file (see `UsageOutbox`).
    public var usageOutboxPath: String
    /// The registry's blob store root (read-only here).
    public var blobDirectory: String
    /// Delivery's blob store of variants.
    public var variantDirectory: String
    /// The largest object transcoded, in bytes.
    public var maxTranscodeBytes: UInt64

    /// Explicit settings.
    public init(databasePath: String, blobDirectory: String, variantDirectory: String, maxTranscodeBytes: UInt64 = 512 << 20) {
        self.databasePath = databasePath
        self.usageOutboxPath = databasePath.replacingOccurrences(of: ".sqlite", with: "") + "-usage.sqlite"
        self.blobDirectory = blobDirectory
        self.variantDirectory = variantDirectory
        self.maxTranscodeBytes = maxTranscodeBytes
    }

    /// Settings from the process configuration.
    public init(runtime: RuntimeConfiguration, values: ConfigValues) throws(ConfigurationError) {
        self.databasePath = "\(runtime.serviceDirectory)/delivery.sqlite"
        self.usageOutboxPath = "\(runtime.serviceDirectory)/usage-outbox.sqlite"
        self.blobDirectory = values.string("ATRIUM_BLOB_DIR", default: "\(runtime.dataDirectory)/registry/blobs")
        self.variantDirectory = values.string("ATRIUM_DELIVERY_VARIANT_DIR", default: "\(runtime.serviceDirectory)/variants")
        self.maxTranscodeBytes = UInt64(try values.int("ATRIUM_DELIVERY_MAX_TRANSCODE_BYTES", default: 512 << 20, range: (1 << 20)...(4 << 30)))
    }
}
