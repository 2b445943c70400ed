public import AtriumCore
public import AtriumRuntime

/// The registry's settings.
///
/// Keys (besides the runtime's, see ``RuntimeConfiguration``):
/// - `ATRIUM_BLOB_DIR`: the blob store root (default `<data>/registry/blobs`). Delivery and processing open
///   the same directory read-only.
/// - `ATRIUM_REGISTRY_MAX_IMAGE_BYTES`: the largest single upload (default 4 GiB).
public struct RegistryConfiguration: Sendable {
    /// The SQLite file of the index.
    public var databasePath: String
    /// The blob store root.
    public var blobDirectory: String
    /// The largest single upload in bytes.
    public var maxImageBytes: UInt64

    /// Explicit settings.
    public init(databasePath: String, blobDirectory: String, maxImageBytes: UInt64 = 4 << 30) {
        self.databasePath = databasePath
        self.blobDirectory = blobDirectory
        self.maxImageBytes = maxImageBytes
    }

    /// Settings from the process configuration.
    public init(runtime: RuntimeConfiguration, values: ConfigValues) throws(ConfigurationError) {
        self.databasePath = "\(runtime.serviceDirectory)/registry.sqlite"
        self.blobDirectory = values.string("ATRIUM_BLOB_DIR", default: "\(runtime.dataDirectory)/registry/blobs")
        self.maxImageBytes = UInt64(try values.int("ATRIUM_REGISTRY_MAX_IMAGE_BYTES", default: 4 << 30, range: 1...(1 << 40)))
    }
}
