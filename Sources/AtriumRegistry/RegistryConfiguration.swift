public import AtriumCore
public import AtriumRuntime
public import AtriumTransport

/// The registry's settings.
///
/// Keys (besides the runtime's, see ``RuntimeConfiguration``):
/// - `ATRIUM_BLOB_DIR`: the blob store root (default `<data>/registry/blobs`). Delivery and processing open
///   the same directory read-only.
/// - `ATRIUM_REGISTRY_MAX_IMAGE_BYTES`: the largest single upload (default 2 GiB). An upload is parsed in
///   memory once it is written, so each concurrent upload may hold up to this much memory for a moment.
/// - `ATRIUM_UID_ROOT`: the root of the UIDs made for raw-pixel registrations (default `2.25`, which makes
///   UUID-derived UIDs; an organisation's own root is at most 24 characters of digits and dots).
/// - `ATRIUM_THUMBNAIL_EDGE`: the longest edge of thumbnails in pixels (default 128, 16 to 1024).
/// - `ATRIUM_REGISTRY_STORAGE_LEASE_BYTES`: the storage quota the registry takes from security at once for a
///   subscriber's uploads (default 64 MiB; 0: one reservation per upload, a call to security each). See
///   ``StorageLeases``.
/// - `ATRIUM_REGISTRY_STORAGE_LEASE_MS`: how long one lease is drawn on before the next is taken (default 5000):
///   the bound on how late a lowered quota or a suspension reaches uploads.
/// - `ATRIUM_REGISTRY_UPLOAD_PORT`: when the registry runs as its own process, the HTTPS port of its upload data
///   plane, where `AuthorizeUpload`'s capabilities are used (default 7446; 0 picks a free one, written to
///   `<ATRIUM_PORT_FILE>.uploads`; `off`: no upload byte path, `AuthorizeUpload` answers FAILED_PRECONDITION). It
///   binds `ATRIUM_LISTEN_HOST` and serves `ATRIUM_REGISTRY_UPLOAD_TLS_CERT` / `_KEY` (default: the process's
///   certificate). In `atrium serve all` the one data plane (`ATRIUM_DELIVERY_BYTES_PORT`) takes uploads too.
/// - `ATRIUM_REGISTRY_UPLOAD_URL`: that plane's base URL as clients reach it, when not the gateway's host.
/// - `ATRIUM_REGISTRY_UPLOAD_CAPABILITY_TTL_MS`: how long an upload capability may wait before its upload starts
///   (default 5000, 100 to 60000): the bound on how long a suspended subscriber can still start uploads.
public struct RegistryConfiguration: Sendable {
    /// The SQLite file of the index.
    public var databasePath: String
    /// The blob store root.
    public var blobDirectory: String
    /// The largest single upload in bytes.
    public var maxImageBytes: UInt64
    /// The UID root for objects the registry makes.
    public var uidRoot: String
    /// The longest edge of thumbnails.
    public var thumbnailEdge: Int
    /// The bytes of quota taken from security at once (0: a reservation per upload).
    public var storageLeaseBytes: UInt64 = 64 << 20
    /// How long one lease is drawn on.
    public var storageLeaseWindow: Duration = .seconds(5)
    /// The registry's own upload data plane (its own process only); `nil` when off.
    public var uploadListen: HostAndPort?
    /// Where that plane writes its bound port, if anywhere.
    public var uploadPortFile: String?
    /// Its certificate and key.
    public var uploadTLS = TLSFiles(caPath: "", certificatePath: "", keyPath: "")
    /// The base URL clients are told to use for it; empty: the gateway's host with the bound port.
    public var uploadBaseURL = ""
    /// How long an upload capability may wait before its upload starts.
    public var uploadCapabilityLifetime: Duration = .seconds(5)

    /// Explicit settings.
    public init(databasePath: String, blobDirectory: String, maxImageBytes: UInt64 = 2 << 30, uidRoot: String = "2.25", thumbnailEdge: Int = 128) {
        self.databasePath = databasePath
        self.blobDirectory = blobDirectory
        self.maxImageBytes = maxImageBytes
        self.uidRoot = uidRoot
        self.thumbnailEdge = thumbnailEdge
    }

    /// Settings from the process configuration.
    public init(runtime: RuntimeConfiguration, values: ConfigValues) throws(ConfigurationError) {
        self.databasePath = "\(runtime.serviceDirectory)/registry.sqlite"
        self.blobDirectory = runtime.blobDirectory
        self.maxImageBytes = UInt64(try values.int("ATRIUM_REGISTRY_MAX_IMAGE_BYTES", default: 2 << 30, range: 1...(4 << 30)))
        self.uidRoot = values.string("ATRIUM_UID_ROOT", default: "2.25")
        self.thumbnailEdge = try values.int("ATRIUM_THUMBNAIL_EDGE", default: 128, range: 16...1024)
        self.storageLeaseBytes = UInt64(try values.int("ATRIUM_REGISTRY_STORAGE_LEASE_BYTES", default: 64 << 20, range: 0...(1 << 40)))
        self.storageLeaseWindow = .milliseconds(try values.int("ATRIUM_REGISTRY_STORAGE_LEASE_MS", default: 5000, range: 100...600_000))
        if values.string("ATRIUM_REGISTRY_UPLOAD_PORT") != "off" {
            let port = try values.int("ATRIUM_REGISTRY_UPLOAD_PORT", default: ServiceName.registryUploadPort, range: 0...65535)
            self.uploadListen = HostAndPort(host: runtime.listen.host, port: port)
        }
        self.uploadPortFile = runtime.portFile.map { $0 + ".uploads" }
        self.uploadTLS = TLSFiles(
            caPath: runtime.tls.caPath,
            certificatePath: values.string("ATRIUM_REGISTRY_UPLOAD_TLS_CERT", default: runtime.tls.certificatePath),
            keyPath: values.string("ATRIUM_REGISTRY_UPLOAD_TLS_KEY", default: runtime.tls.keyPath)
        )
        self.uploadBaseURL = values.string("ATRIUM_REGISTRY_UPLOAD_URL", default: "")
        self.uploadCapabilityLifetime = .milliseconds(try values.int("ATRIUM_REGISTRY_UPLOAD_CAPABILITY_TTL_MS", default: 5000, range: 100...60_000))
        guard Self.isUIDRoot(uidRoot) else {
            throw ConfigurationError(key: "ATRIUM_UID_ROOT", problem: "must be 1 to 24 characters of digits and dots, each component without a leading zero")
        }
    }

    static func isUIDRoot(_ root: String) -> Bool {
        guard (1...24).contains(root.utf8.count) else { return false }
        let components = root.split(separator: ".", omittingEmptySubsequences: false)
        return components.allSatisfy { component in
            !component.isEmpty && component.allSatisfy(\.isASCII) && component.allSatisfy(\.isNumber) && (component == "0" || component.first != "0")
        }
    }
}
