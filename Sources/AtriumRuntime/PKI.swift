import AtriumCore
import AtriumTransport
import Crypto
public import Foundation
import SwiftASN1
public import X509

/// A certificate authority held in memory, able to issue leaf certificates. Used for the development PKI,
/// for tests, and (with the security issue) for enrolment.
public struct CertificateAuthority: Sendable {
    /// The CA certificate.
    public let certificate: Certificate
    private let key: P256.Signing.PrivateKey

    /// A new self-signed CA.
    public init(commonName: String, validity: Duration = .seconds(10 * 365 * 86_400), now: Date = Date()) throws {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("Atrium")
            CommonName(commonName)
        }
        let publicKey = Certificate.PublicKey(key.publicKey)
        self.certificate = try Certificate(
            version: .v3,
            serialNumber: .init(),
            publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(TimeInterval(validity.components.seconds)),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: .init(key)
        )
        self.key = key
    }

    /// A CA loaded from PEM files.
    public init(certificatePEM: String, keyPEM: String) throws {
        self.certificate = try Certificate(pemEncoded: certificatePEM)
        self.key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
    }

    /// The CA's private key in PEM (PKCS#8).
    public var keyPEM: String { key.pemRepresentation }

    /// Issues a leaf certificate for `publicKey` usable for both TLS server and client authentication.
    ///
    /// - Parameters:
    ///   - commonName: the subject CN.
    ///   - dnsNames: DNS subject alternative names.
    ///   - ipAddresses: IPv4 or IPv6 literals as SANs.
    ///   - uris: URI SANs, e.g. `atrium://service/registry` or `atrium://subscriber/<id>`.
    public func issue(
        publicKey: Certificate.PublicKey,
        commonName: String,
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        uris: [String] = [],
        validity: Duration = .seconds(825 * 86_400),
        now: Date = Date()
    ) throws -> Certificate {
        var names: [GeneralName] = dnsNames.map { .dnsName($0) }
        for ip in ipAddresses {
            guard let bytes = Self.ipBytes(ip) else { throw ConfigurationError(key: "certificate", problem: "'\(ip)' is not an IP address") }
            names.append(.ipAddress(ASN1OctetString(contentBytes: bytes[...])))
        }
        names += uris.map { .uniformResourceIdentifier($0) }
        let subject = try DistinguishedName {
            OrganizationName("Atrium")
            CommonName(commonName)
        }
        let sans = SubjectAlternativeNames(names)
        return try Certificate(
            version: .v3,
            serialNumber: .init(),
            publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(TimeInterval(validity.components.seconds)),
            issuer: certificate.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectKeyIdentifier(hash: publicKey)
                AuthorityKeyIdentifier(keyIdentifier: try certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
                sans
            },
            issuerPrivateKey: .init(key)
        )
    }

    /// Issues a certificate with a new P-256 key and writes `<name>.pem` and `<name>.key` (mode 0600) to `directory`.
    @discardableResult
    public func issueFiles(
        name: String,
        in directory: String,
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        uris: [String] = []
    ) throws -> (certificatePath: String, keyPath: String) {
        let key = P256.Signing.PrivateKey()
        let certificate = try issue(
            publicKey: .init(key.publicKey),
            commonName: name,
            dnsNames: dnsNames,
            ipAddresses: ipAddresses,
            uris: uris
        )
        let certificatePath = "\(directory)/\(name).pem"
        let keyPath = "\(directory)/\(name).key"
        try PEMFiles.write(key.pemRepresentation, to: keyPath, mode: 0o600)
        try PEMFiles.write(certificate.serializeAsPEM().pemString, to: certificatePath, mode: 0o644)
        return (certificatePath, keyPath)
    }

    private static func ipBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}

/// The development PKI that `atrium up` and `atrium pki init` create on first start: a CA and one
/// certificate per service, under one directory.
///
/// Layout: `ca.pem`, `ca.key`, and `<service>.pem` / `<service>.key` for each ``ServiceName``. Each service
/// certificate carries the URI SAN `atrium://service/<name>` (how backends recognise a peer service and the
/// gateway), the DNS names `<name>`, `localhost` and any extra hosts, and the loopback IPs. Existing files
/// are kept, so the PKI survives restarts; a missing service certificate is issued from the existing CA.
public enum DevelopmentPKI {
    /// Creates whatever is missing in `directory`. Returns the paths of files it wrote.
    @discardableResult
    public static func ensure(directory: String, extraHosts: [String] = []) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let caPath = "\(directory)/ca.pem"
        let caKeyPath = "\(directory)/ca.key"
        var written: [String] = []
        let authority: CertificateAuthority
        if FileManager.default.fileExists(atPath: caPath) {
            authority = try CertificateAuthority(
                certificatePEM: String(contentsOfFile: caPath, encoding: .utf8),
                keyPEM: String(contentsOfFile: caKeyPath, encoding: .utf8)
            )
        } else {
            authority = try CertificateAuthority(commonName: "Atrium Development CA")
            try PEMFiles.write(authority.keyPEM, to: caKeyPath, mode: 0o600)
            try PEMFiles.write(authority.certificate.serializeAsPEM().pemString, to: caPath, mode: 0o644)
            written += [caPath, caKeyPath]
        }
        for service in ServiceName.allCases {
            let files = TLSFiles.service(service, in: directory)
            guard !FileManager.default.fileExists(atPath: files.certificatePath) else { continue }
            var hosts = [service.rawValue, "localhost"]
            for host in extraHosts where !hosts.contains(host) { hosts.append(host) }
            try authority.issueFiles(
                name: service.rawValue,
                in: directory,
                dnsNames: hosts,
                ipAddresses: ["127.0.0.1", "::1"],
                uris: [service.certificateURI]
            )
            written += [files.certificatePath, files.keyPath]
        }
        return written
    }
}
