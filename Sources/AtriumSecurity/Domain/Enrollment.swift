import AtriumRuntime
import Crypto
import Foundation
import SwiftASN1
import X509

/// Issues subscriber client certificates from PKCS#10 requests, with the Atrium CA.
struct EnrollmentAuthority: Sendable {
    let authority: CertificateAuthority
    /// The CA certificate, PEM, handed to the subscriber for its trust store.
    let caPEM: String
    let validity: Duration

    /// The largest CSR accepted, in bytes of PEM.
    static let maximumRequestBytes = 16 << 10

    /// Loads the CA from PEM files.
    init(certificatePath: String, keyPath: String, validity: Duration) throws {
        let certificatePEM = try String(contentsOfFile: certificatePath, encoding: .utf8)
        self.authority = try CertificateAuthority(certificatePEM: certificatePEM, keyPEM: String(contentsOfFile: keyPath, encoding: .utf8))
        self.caPEM = try authority.certificate.serializeAsPEM().pemString
        self.validity = validity
    }

    /// The public key of a well-formed, self-signed request; INVALID_ARGUMENT with what is wrong otherwise.
    static func publicKey(ofRequest pem: String) throws -> Certificate.PublicKey {
        guard !pem.isEmpty else { throw SecurityError.invalidArgument("csr_pem is required") }
        guard pem.utf8.count <= maximumRequestBytes else {
            throw SecurityError.invalidArgument("csr_pem is larger than \(maximumRequestBytes) bytes")
        }
        let request: CertificateSigningRequest
        do {
            request = try CertificateSigningRequest(pemEncoded: pem)
        } catch {
            throw SecurityError.invalidArgument("csr_pem is not a PEM-encoded PKCS#10 certificate signing request")
        }
        guard P256.Signing.PublicKey(request.publicKey) != nil || Curve25519.Signing.PublicKey(request.publicKey) != nil else {
            throw SecurityError.invalidArgument("the CSR's key must be P-256 or Ed25519")
        }
        guard request.publicKey.isValidSignature(request.signature, for: request) else {
            throw SecurityError.invalidArgument("the CSR's signature does not verify with its own public key")
        }
        return request.publicKey
    }

    /// A client certificate for `subscriberID` carrying the URI SAN `atrium://subscriber/<id>`.
    func issue(publicKey: Certificate.PublicKey, subscriberID: String, now: Date) throws -> Certificate {
        try authority.issue(
            publicKey: publicKey,
            commonName: subscriberID,
            uris: ["atrium://subscriber/\(subscriberID)"],
            validity: validity,
            now: now
        )
    }
}
