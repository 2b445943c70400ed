public import AtriumCore
import Foundation

/// Paths to the PEM files a process uses for TLS: its certificate chain, its private key, and the CA it trusts.
public struct TLSFiles: Sendable, Hashable {
    /// The trusted CA certificate(s), PEM.
    public var caPath: String
    /// This process's certificate, PEM.
    public var certificatePath: String
    /// This process's private key, PEM (PKCS#8).
    public var keyPath: String

    /// Explicit paths.
    public init(caPath: String, certificatePath: String, keyPath: String) {
        self.caPath = caPath
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }

    /// The files of `name` in a PKI directory laid out by ``DevelopmentPKI``.
    public static func service(_ name: ServiceName, in directory: String) -> TLSFiles {
        TLSFiles(caPath: "\(directory)/ca.pem", certificatePath: "\(directory)/\(name).pem", keyPath: "\(directory)/\(name).key")
    }
}

/// HTTP/2 and payload settings shared by every Atrium server and client.
///
/// The 1 MiB window and frame size matter: with swift-nio-http2's defaults (8 MiB window, 16 KiB frames) a
/// TLS stream runs ~10× slower, because the receive buffer grows past the window and is copied on every read
/// (see docs/architecture.md, "Transport settings").
public enum TransportTuning {
    /// HTTP/2 target window size in bytes.
    public static let windowSize = 1 << 20
    /// HTTP/2 max frame size in bytes.
    public static let maxFrameSize = 1 << 20
}

/// Writing key material atomically with the right permissions.
package enum PEMFiles {
    /// Writes `text` to `path` through a temp file and rename, with `mode` set before any byte is written.
    package static func write(_ text: String, to path: String, mode: Int) throws {
        let temp = path + ".tmp"
        _ = FileManager.default.createFile(atPath: temp, contents: nil, attributes: [.posixPermissions: mode])
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temp))
        try handle.write(contentsOf: Data(text.utf8))
        try handle.synchronize()
        try handle.close()
        guard rename(temp, path) == 0 else {
            throw ConfigurationError(key: path, problem: "cannot rename \(temp) into place")
        }
    }
}
