import AtriumCore
import AtriumRuntime
import AtriumTesting
import Foundation
import Testing
import AtriumTransport

@Suite("Configuration")
struct ConfigurationTests {
    @Test("env-file lines parse with comments, export prefixes and quotes; bad lines are refused with their number")
    func envFile() throws {
        let values = try ConfigValues.parseEnvFile("""
            # comment
            ATRIUM_PORT=7600
            export ATRIUM_LOG_LEVEL = "debug"
            ATRIUM_DATA_DIR='/srv/atrium'

            """)
        #expect(values == ["ATRIUM_PORT": "7600", "ATRIUM_LOG_LEVEL": "debug", "ATRIUM_DATA_DIR": "/srv/atrium"])
        #expect(throws: ConfigurationError(key: "<config>", problem: "line 2 is not KEY=value")) {
            try ConfigValues.parseEnvFile("A=1\nnonsense\n")
        }
    }

    @Test("the environment overrides the file named by ATRIUM_CONFIG_FILE, and only ATRIUM_ keys count")
    func layering() throws {
        let directory = try TemporaryDirectory()
        let file = "\(directory.path)/atrium.env"
        try "ATRIUM_PORT=1000\nATRIUM_DATA_DIR=/from/file\n".write(toFile: file, atomically: true, encoding: .utf8)
        let values = try ConfigValues.fromEnvironment(["ATRIUM_CONFIG_FILE": file, "ATRIUM_PORT": "2000", "HOME": "/root"])
        #expect(values.string("ATRIUM_PORT") == "2000")
        #expect(values.string("ATRIUM_DATA_DIR") == "/from/file")
        #expect(values.string("HOME") == nil)
        #expect(throws: ConfigurationError.self) { try ConfigValues.fromEnvironment(["ATRIUM_CONFIG_FILE": "\(directory.path)/missing"]) }
    }

    @Test("typed values are checked, with the key and the problem in the error")
    func typed() throws {
        let values = ConfigValues(["ATRIUM_PORT": "http", "ATRIUM_FLAG": "maybe", "ATRIUM_REGISTRY_ADDR": "registry"])
        #expect(throws: ConfigurationError.self) { try values.int("ATRIUM_PORT", default: 1, range: 0...65535) }
        #expect(throws: ConfigurationError.self) { try values.bool("ATRIUM_FLAG", default: false) }
        #expect(throws: ConfigurationError.self) { try values.address("ATRIUM_REGISTRY_ADDR", default: nil) }
        #expect(throws: ConfigurationError.self) { try RuntimeConfiguration(service: .registry, values: ConfigValues(["ATRIUM_LOG_LEVEL": "loud"])) }
    }

    @Test("addresses parse host:port and [v6]:port", arguments: [
        ("localhost:7443", "localhost", 7443), ("10.0.0.5:1", "10.0.0.5", 1), ("[::1]:7502", "::1", 7502),
    ])
    func addresses(text: String, host: String, port: Int) {
        #expect(HostAndPort(text) == HostAndPort(host: host, port: port))
    }

    @Test("malformed addresses are refused", arguments: ["", "host", "host:", ":80", "host:99999", "[::1]80"])
    func badAddresses(text: String) {
        #expect(HostAndPort(text) == nil)
    }

    @Test("runtime defaults: loopback, the service's port, ./var, the PKI's files, every peer at its default port")
    func defaults() throws {
        let runtime = try RuntimeConfiguration(service: .delivery, values: ConfigValues())
        #expect(runtime.listen == HostAndPort(host: "127.0.0.1", port: 7503))
        #expect(runtime.serviceDirectory == "./var/delivery")
        #expect(runtime.tls == TLSFiles(caPath: "./var/pki/ca.pem", certificatePath: "./var/pki/delivery.pem", keyPath: "./var/pki/delivery.key"))
        #expect(runtime.address(of: .registry) == HostAndPort(host: "127.0.0.1", port: 7502))
        let scaled = try RuntimeConfiguration(service: .gateway, values: ConfigValues(["ATRIUM_PROCESSING_ADDRS": "a:1, b:2"]))
        #expect(scaled.peers[.processing] == [HostAndPort(host: "a", port: 1), HostAndPort(host: "b", port: 2)])
    }
}
