public import AtriumCore
import Crypto
import SwiftASN1
public import X509

/// What an Atrium certificate says about its holder: the URI subject alternative names the PKI writes
/// (`atrium://subscriber/<id>`, `atrium://service/<name>`), its serial and its fingerprint. Servers read it from
/// a peer's certificate (`PeerIdentity`), the SDK from the certificate it enrolled for.
public enum CertificateIdentity {
    /// The URI subject alternative names of a certificate.
    public static func uris(of certificate: Certificate) -> [String] {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return [] }
        return names.compactMap { name in
            if case .uniformResourceIdentifier(let uri) = name { return uri }
            return nil
        }
    }

    /// The subscriber a client certificate was issued to (URI SAN `atrium://subscriber/<id>`), if any.
    public static func subscriberID(of certificate: Certificate) -> String? {
        let prefix = "atrium://subscriber/"
        return uris(of: certificate).lazy.filter { $0.hasPrefix(prefix) && $0.utf8.count > prefix.utf8.count }
            .map { String($0.dropFirst(prefix.count)) }.first
    }

    /// A certificate's serial number in lower-case hex.
    public static func serial(of certificate: Certificate) -> String {
        Hex.encode(certificate.serialNumber.bytes)
    }

    /// The lower-case hex SHA-256 of a certificate's DER encoding.
    public static func fingerprint(of certificate: Certificate) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return Hex.encode(SHA256.hash(data: serializer.serializedBytes))
    }

    /// The Atrium service a certificate was issued to (URI SAN `atrium://service/<name>`), if any.
    public static func service(of certificate: Certificate) -> ServiceName? {
        uris(of: certificate).lazy.compactMap(ServiceName.init(certificateURI:)).first
    }
}
