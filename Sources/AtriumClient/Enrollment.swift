import SwiftProtobuf
import AtriumAPI
public import AtriumCore
import Crypto
import Foundation
import GRPCCore
import SwiftASN1
import X509
import AtriumTransport

/// A client certificate obtained by enrolment, as files: `subscriber.pem`, `subscriber.key` (mode 0600) and
/// `ca.pem` in one directory.
public struct EnrolledIdentity: Sendable, Hashable {
    /// The directory holding the files.
    public var directory: String
    /// The subscriber the certificate names.
    public var subscriberID: String

    /// The subscriber certificate (PEM): `subscriber.pem` in `directory`.
    public var certificatePath: String { "\(directory)/subscriber.pem" }
    /// The certificate's P-256 private key (PEM, mode 0600): `subscriber.key` in `directory`.
    public var keyPath: String { "\(directory)/subscriber.key" }
    /// The certificate of Atrium's CA, which issued the subscriber certificate (PEM): `ca.pem` in `directory`.
    public var caPath: String { "\(directory)/ca.pem" }

    /// The identity stored in `directory` by an earlier enrolment, if there is one.
    public init?(directory: String) {
        self.directory = directory
        guard let pem = try? String(contentsOfFile: "\(directory)/subscriber.pem", encoding: .utf8),
            let certificate = try? Certificate(pemEncoded: pem),
            let id = CertificateIdentity.subscriberID(of: certificate),
            FileManager.default.fileExists(atPath: "\(directory)/subscriber.key")
        else { return nil }
        self.subscriberID = id
    }

    init(directory: String, subscriberID: String) {
        self.directory = directory
        self.subscriberID = subscriberID
    }
}

extension AtriumClient {
    /// Enrols this program as a subscriber, on first start: makes a P-256 key pair here (the private key never
    /// leaves the machine), sends a certificate signing request with the one-time `token` an operator issued,
    /// and stores the certificate Atrium's CA returns, with the key and the CA certificate, in `directory`.
    ///
    /// - Parameters:
    ///   - gateway: the gateway's API-key port (the caller has no certificate yet).
    ///   - caPath: the CA that signed the gateway's certificate.
    /// - Returns: the stored identity; use it with ``AtriumClientConfiguration/init(gateway:caPath:identity:chunkSize:)``
    ///   against the gateway's client-certificate port.
    public static func enroll(gateway: HostAndPort, caPath: String?, token: String, into directory: String) async throws -> EnrolledIdentity {
        let key = P256.Signing.PrivateKey()
        let request = try CertificateSigningRequest(
            version: .v1,
            subject: try DistinguishedName { CommonName("atrium-subscriber") },
            privateKey: Certificate.PrivateKey(key),
            attributes: CertificateSigningRequest.Attributes()
        )
        let csr = try request.serializeAsPEM().pemString
        let security: ClientSecurity = caPath.map { .tls(caPath: $0) } ?? .plaintext
        let response = try await ClientFactory.withClient(to: gateway, security: security) { grpc in
            try await Atrium_V1_Account.Client(wrapping: grpc).enroll(.with {
                $0.token = token
                $0.csrPem = csr
            })
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let identity = EnrolledIdentity(directory: directory, subscriberID: response.subscriberID)
        try PEMFiles.write(key.pemRepresentation, to: identity.keyPath, mode: 0o600)
        try PEMFiles.write(response.caCertificatePem, to: identity.caPath, mode: 0o644)
        try PEMFiles.write(response.certificatePem, to: identity.certificatePath, mode: 0o644)
        return identity
    }
}
