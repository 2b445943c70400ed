public import AtriumCore
public import AtriumRuntime
import Foundation
public import AtriumTransport

/// Delivery's settings.
///
/// Keys (besides the runtime's, see ``RuntimeConfiguration``):
/// - `ATRIUM_BLOB_DIR`: the registry's blob store, opened read-only (default `<data>/registry/blobs`).
/// - `ATRIUM_DELIVERY_VARIANT_DIR`: delivery's own blob store of transcoded variants (default
///   `<data>/delivery/variants`). It is a cache: deleting it (with `delivery.sqlite`'s `variant` rows) only
///   costs transcoding again.
/// - `ATRIUM_DELIVERY_MAX_TRANSCODE_BYTES`: the largest stored object delivery transcodes in memory (default
///   512 MiB); a larger one is delivered in its original encoding, with a note saying why.
/// - `ATRIUM_DELIVERY_BYTES_PORT`: the data plane's HTTPS port, where `AuthorizeFetch`'s capabilities are read
///   (default 7445; 0 picks a free one, written to `<ATRIUM_PORT_FILE>.bytes`; `off` disables the byte path). It
///   binds `ATRIUM_LISTEN_HOST` and serves the process's TLS certificate unless `ATRIUM_DELIVERY_BYTES_TLS_CERT`
///   and `ATRIUM_DELIVERY_BYTES_TLS_KEY` name others (the name clients reach it by must be in it).
/// - `ATRIUM_DELIVERY_BYTES_URL`: the data plane's base URL as clients reach it, e.g.
///   `https://images.example.org:7445`, when that is not the gateway's host with the port above.
/// - `ATRIUM_DELIVERY_CAPABILITY_TTL_MS`: how long a byte-path capability stays valid (default 5000, 100 to
///   60000): the bound on how long a revoked share or a suspended subscriber can still read what it was granted.
/// - `ATRIUM_DELIVERY_VISIBILITY_MS`: how long delivery keeps an image record the registry allowed a caller to
///   fetch, so that fetching it again asks the registry nothing (default 5000, the gateway's authorisation window;
///   0 asks every time, at most 60000): the bound on how long a revoked share still lets a fetch through.
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
    /// The data plane's listener; `nil` when the byte path is off.
    public var bytesListen: HostAndPort?
    /// Where the data plane writes its bound port, if anywhere.
    public var bytesPortFile: String?
    /// Its certificate and key.
    public var bytesTLS: TLSFiles
    /// The base URL clients are told to use; empty: the gateway's host with the bound port.
    public var bytesBaseURL: String
    /// How long a capability stays valid.
    public var capabilityTTL: Duration
    /// How long an allowed image record is kept (zero: not kept).
    public var visibilityLifetime: Duration = .seconds(5)

    /// Explicit settings.
    public init(databasePath: String, blobDirectory: String, variantDirectory: String, maxTranscodeBytes: UInt64 = 512 << 20) {
        self.databasePath = databasePath
        self.usageOutboxPath = databasePath.replacingOccurrences(of: ".sqlite", with: "") + "-usage.sqlite"
        self.blobDirectory = blobDirectory
        self.variantDirectory = variantDirectory
        self.maxTranscodeBytes = maxTranscodeBytes
        self.bytesListen = nil
        self.bytesPortFile = nil
        self.bytesTLS = TLSFiles(caPath: "", certificatePath: "", keyPath: "")
        self.bytesBaseURL = ""
        self.capabilityTTL = .seconds(5)
    }

    /// Settings from the process configuration.
    public init(runtime: RuntimeConfiguration, values: ConfigValues) throws(ConfigurationError) {
        self.databasePath = "\(runtime.serviceDirectory)/delivery.sqlite"
        self.usageOutboxPath = "\(runtime.serviceDirectory)/usage-outbox.sqlite"
        self.blobDirectory = runtime.blobDirectory
        self.variantDirectory = values.string("ATRIUM_DELIVERY_VARIANT_DIR", default: "\(runtime.serviceDirectory)/variants")
        self.maxTranscodeBytes = UInt64(try values.int("ATRIUM_DELIVERY_MAX_TRANSCODE_BYTES", default: 512 << 20, range: (1 << 20)...(4 << 30)))
        if values.string("ATRIUM_DELIVERY_BYTES_PORT") == "off" {
            self.bytesListen = nil
        } else {
            let port = try values.int("ATRIUM_DELIVERY_BYTES_PORT", default: ServiceName.deliveryBytesPort, range: 0...65535)
            self.bytesListen = HostAndPort(host: runtime.listen.host, port: port)
        }
        self.bytesPortFile = runtime.portFile.map { $0 + ".bytes" }
        self.bytesTLS = TLSFiles(
            caPath: runtime.tls.caPath,
            certificatePath: values.string("ATRIUM_DELIVERY_BYTES_TLS_CERT", default: runtime.tls.certificatePath),
            keyPath: values.string("ATRIUM_DELIVERY_BYTES_TLS_KEY", default: runtime.tls.keyPath)
        )
        self.bytesBaseURL = values.string("ATRIUM_DELIVERY_BYTES_URL", default: "")
        self.capabilityTTL = .milliseconds(try values.int("ATRIUM_DELIVERY_CAPABILITY_TTL_MS", default: 5000, range: 100...60_000))
        self.visibilityLifetime = .milliseconds(try values.int("ATRIUM_DELIVERY_VISIBILITY_MS", default: 5000, range: 0...60_000))
    }
}
