import AtriumCore
import AtriumRuntime
import AtriumTesting
import Foundation
import Testing
import SwiftASN1
import X509
import AtriumTransport

@Suite("Development PKI")
struct PKITests {
    @Test("ensure() makes a CA and one certificate per service, with the service URI SAN and loopback names")
    func creates() throws {
        let directory = try TemporaryDirectory()
        let written = try DevelopmentPKI.ensure(directory: directory.path, extraHosts: ["atrium.example"])
        #expect(written.count == 2 + 2 * ServiceName.allCases.count)
        let ca = try Certificate(pemEncoded: String(contentsOfFile: "\(directory.path)/ca.pem", encoding: .utf8))
        for service in ServiceName.allCases {
            let files = TLSFiles.service(service, in: directory.path)
            let certificate = try Certificate(pemEncoded: String(contentsOfFile: files.certificatePath, encoding: .utf8))
            #expect(certificate.issuer == ca.subject)
            let names = try #require(try certificate.extensions.subjectAlternativeNames)
            #expect(names.contains(.uniformResourceIdentifier("atrium://service/\(service)")))
            #expect(names.contains(.dnsName("localhost")))
            #expect(names.contains(.dnsName(service.rawValue)))
            #expect(names.contains(.dnsName("atrium.example")))
            #expect(CertificateIdentity.uris(of: certificate) == ["atrium://service/\(service)"])
            let mode = try FileManager.default.attributesOfItem(atPath: files.keyPath)[.posixPermissions] as? Int
            #expect(mode == 0o600)
        }
    }

    @Test("ensure() keeps what exists and fills in what is missing")
    func idempotent() throws {
        let directory = try TemporaryDirectory()
        try DevelopmentPKI.ensure(directory: directory.path)
        let ca = try String(contentsOfFile: "\(directory.path)/ca.pem", encoding: .utf8)
        #expect(try DevelopmentPKI.ensure(directory: directory.path).isEmpty)
        try FileManager.default.removeItem(atPath: "\(directory.path)/registry.pem")
        #expect(try DevelopmentPKI.ensure(directory: directory.path) == ["\(directory.path)/registry.pem", "\(directory.path)/registry.key"])
        #expect(try String(contentsOfFile: "\(directory.path)/ca.pem", encoding: .utf8) == ca)
    }

    @Test("service names round-trip through certificate URIs; other URIs are not services")
    func serviceURIs() {
        for service in ServiceName.allCases {
            #expect(ServiceName(certificateURI: service.certificateURI) == service)
        }
        #expect(ServiceName(certificateURI: "atrium://subscriber/sub_x") == nil)
        #expect(ServiceName(certificateURI: "atrium://service/printer") == nil)
    }
}
