import AtriumRuntime
import AtriumTesting
import Crypto
import Foundation
import SwiftASN1
import Testing
import X509

@testable import AtriumSecurity
import AtriumTransport

@Suite("Enrolment")
struct EnrollmentTests {
    private func csr(signedBy key: P256.Signing.PrivateKey, claiming publicKey: P256.Signing.PublicKey? = nil) throws -> String {
        let request = try CertificateSigningRequest(
            version: .v1,
            subject: try DistinguishedName { CommonName("device") },
            privateKey: Certificate.PrivateKey(key),
            attributes: CertificateSigningRequest.Attributes()
        )
        return try request.serializeAsPEM().pemString
    }

    @Test("a token yields one certificate naming the subscriber; reuse and expiry are refused")
    func oneTime() throws {
        let pki = try TemporaryDirectory(prefix: "atrium-pki")
        try DevelopmentPKI.ensure(directory: pki.path)
        let fixture = try SecurityFixture(enrollmentCA: ("\(pki.path)/ca.pem", "\(pki.path)/ca.key"))
        let id = try fixture.subscriber()
        let authority = try #require(fixture.service.enrollment)
        let token = try fixture.store.createEnrollmentToken(subscriberID: id, expiresAt: fixture.now.addingTimeInterval(60), now: fixture.now)
        let key = P256.Signing.PrivateKey()
        let publicKey = try EnrollmentAuthority.publicKey(ofRequest: try csr(signedBy: key))
        var certificate: Certificate?
        let record = try fixture.store.enroll(token: token, now: fixture.now) { subscriberID in
            let issued = try authority.issue(publicKey: publicKey, subscriberID: subscriberID, now: fixture.now)
            certificate = issued
            return CertificateRecord(
                serial: CertificateIdentity.serial(of: issued), subscriberID: subscriberID, sha256: try CertificateIdentity.fingerprint(of: issued),
                notBefore: issued.notValidBefore, notAfter: issued.notValidAfter, revokedAt: nil
            )
        }
        let issued = try #require(certificate)
        #expect(CertificateIdentity.subscriberID(of: issued) == id)
        #expect(issued.publicKey == Certificate.PublicKey(key.publicKey))
        #expect(try fixture.store.lookupCertificate(serial: record.serial, sha256: record.sha256, subscriberID: id, now: fixture.now).isValid)
        #expect(throws: SecurityError.unauthenticated("the enrolment token has already been used")) {
            try fixture.store.enroll(token: token, now: fixture.now) { _ in record }
        }
        let late = try fixture.store.createEnrollmentToken(subscriberID: id, expiresAt: fixture.now.addingTimeInterval(1), now: fixture.now)
        fixture.now = fixture.now.addingTimeInterval(2)
        #expect(throws: SecurityError.unauthenticated("the enrolment token has expired")) {
            try fixture.store.enroll(token: late, now: fixture.now) { _ in record }
        }
        _ = try fixture.store.revokeCertificate(serial: record.serial, now: fixture.now)
        #expect(!(try fixture.store.lookupCertificate(serial: record.serial, sha256: record.sha256, subscriberID: id, now: fixture.now).isValid))
    }

    @Test("requests that are not PEM CSRs, or whose signature does not verify, are INVALID_ARGUMENT")
    func badRequests() throws {
        #expect(throws: SecurityError.self) { try EnrollmentAuthority.publicKey(ofRequest: "") }
        #expect(throws: SecurityError.self) { try EnrollmentAuthority.publicKey(ofRequest: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n") }
        // Flip one byte of the signature inside a valid CSR.
        var der = try PEMDocument(pemString: try csr(signedBy: P256.Signing.PrivateKey())).derBytes
        der[der.count - 5] ^= 0xFF
        let tampered = PEMDocument(type: "CERTIFICATE REQUEST", derBytes: der).pemString
        #expect(throws: SecurityError.self) { try EnrollmentAuthority.publicKey(ofRequest: tampered) }
    }
}

extension SecurityStore.CredentialLookup {
    var isValid: Bool {
        if case .valid = self { return true }
        return false
    }
}
