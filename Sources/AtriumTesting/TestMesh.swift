public import AtriumAPI
public import AtriumClient
import SwiftProtobuf
import AtriumCore
import AtriumRuntime
import Foundation
public import AtriumDICOM
public import AtriumAssembly

/// A temporary directory, removed when the value is released.
public final class TemporaryDirectory: Sendable {
    /// Its path.
    public let path: String

    /// Creates a new, empty directory under the system's temp directory.
    public init(prefix: String = "atrium-test") throws {
        let base = FileManager.default.temporaryDirectory.path
        path = "\(base)/\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// The `atrium` executable under test: `$ATRIUM_BINARY`, else `.build/debug/atrium` in this package.
public enum AtriumBinary {
    /// Its path.
    public static var path: String {
        if let path = ProcessInfo.processInfo.environment["ATRIUM_BINARY"], !path.isEmpty { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/atrium").path
    }

    /// Runs the executable to completion and returns its standard output. Throws on a non-zero exit.
    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> String {
        let (status, text) = try execute(arguments, environment: environment)
        guard status == 0 else {
            throw ConfigurationError(key: "atrium \(arguments.joined(separator: " "))", problem: "exit \(status): \(text)")
        }
        return text
    }

    /// Runs the executable to completion; returns its exit status and standard output (standard error is
    /// discarded).
    public static func execute(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// The real mesh as separate `atrium serve` processes on ephemeral loopback ports, with TLS and mTLS, in a
/// temporary data directory; and an operator API key to call it with.
public final class TestMesh: Sendable {
    /// The running processes.
    public let mesh: LocalMesh
    /// The data directory (removed with the mesh).
    public let directory: TemporaryDirectory
    /// The operator's API key.
    public let operatorKey: String

    /// Starts the mesh: one process per service (`split`, what most tests need to reach a backend directly), or
    /// one `atrium serve all` process. Call ``stop()`` when done.
    public init(split: Bool = true, processingInstances: Int = 2, environment: [String: String] = [:]) async throws {
        let directory = try TemporaryDirectory(prefix: "atrium-mesh")
        self.directory = directory
        let bootstrap = try AtriumBinary.run(["security", "bootstrap", "--data-dir", directory.path])
        guard let line = bootstrap.split(separator: "\n").first(where: { $0.hasPrefix("ATRIUM_API_KEY=") }) else {
            throw ConfigurationError(key: "bootstrap", problem: bootstrap)
        }
        operatorKey = String(line.dropFirst("ATRIUM_API_KEY=".count))
        let plan = LocalMesh.Plan(
            binary: AtriumBinary.path,
            dataDirectory: directory.path,
            split: split,
            processingInstances: processingInstances,
            ephemeralPorts: true,
            environment: Self.defaultEnvironment.merging(environment) { _, given in given }
        )
        mesh = try await LocalMesh.start(plan)
    }

    /// What every test mesh sets unless the test says otherwise. Every test client calls from 127.0.0.1, like a
    /// whole hospital behind one NAT address, and the authorization tests present unknown and revoked credentials
    /// by the dozen in a second; the gateway's per-address limit on failed authentications (10/s) is tested on its
    /// own, with its own figures.
    public static let defaultEnvironment = [
        "ATRIUM_GATEWAY_AUTH_FAILURES_PER_SECOND": "10000",
        "ATRIUM_GATEWAY_AUTH_FAILURE_BURST": "10000",
    ]

    /// The PKI directory.
    public var pkiDirectory: String { "\(directory.path)/pki" }

    /// The SDK configuration for calling the gateway with `apiKey` (the operator's by default).
    public func clientConfiguration(apiKey: String? = nil) -> AtriumClientConfiguration {
        AtriumClientConfiguration(gateway: mesh.gatewayAddress, caPath: "\(pkiDirectory)/ca.pem", apiKey: apiKey ?? operatorKey)
    }

    /// Creates a subscriber with an API key through the offline admin command; returns (ID, key).
    public func addSubscriber(name: String, kind: String, roles: String) throws -> (id: String, key: String) {
        let output = try AtriumBinary.run(["security", "add-subscriber", "--data-dir", directory.path, "--name", name, "--kind", kind, "--roles", roles])
        var id = "", key = ""
        for line in output.split(separator: "\n") {
            if line.hasPrefix("subscriber ") { id = String(line.dropFirst("subscriber ".count)) }
            if line.hasPrefix("ATRIUM_API_KEY=") { key = String(line.dropFirst("ATRIUM_API_KEY=".count)) }
        }
        return (id, key)
    }

    /// Creates a subscriber through the gateway's admin API, with an API key; returns (ID, key). Without a
    /// contract, the kind's roles and a 1 TiB quota.
    public func createSubscriber(
        name: String,
        kind: Atrium_V1_SubscriberKind,
        patientIDs: [String] = [],
        contract: Atrium_V1_Contract? = nil
    ) async throws -> (id: String, key: String) {
        var terms = contract ?? Atrium_V1_Contract()
        if contract == nil { terms.storageQuotaBytes = 1 << 40 }
        return try await AtriumClient.with(clientConfiguration()) { atrium in
            let subscriber = try await atrium.admin.createSubscriber(
                .with {
                    $0.displayName = name
                    $0.kind = kind
                    $0.patientIds = patientIDs
                    $0.contract = terms
                },
                metadata: atrium.metadata
            )
            let key = try await atrium.admin.createApiKey(.with { $0.subscriberID = subscriber.subscriberID }, metadata: atrium.metadata)
            return (subscriber.subscriberID, key.secret)
        }
    }

    /// The security service's SQLite file.
    public var securityDatabasePath: String { "\(directory.path)/security/security.sqlite" }

    /// Stops every process.
    public func stop() {
        mesh.stop()
    }
}

/// Memory figures of a process, from `/proc`.
public enum ProcessMemory {
    /// Peak resident set size (VmHWM) in bytes, or `nil` when the process is gone.
    public static func peakResidentBytes(of pid: Int32) -> UInt64? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 2, let kilobytes = UInt64(fields[1]) { return kilobytes * 1024 }
        }
        return nil
    }
}

/// Test inputs.
public enum Fixtures {
    /// A valid DICOM Part 10 file (explicit VR little endian) of about `payloadBytes + 1 kB`: a small CT
    /// image, plus `payloadBytes` pseudo-random bytes in a private element just before the pixel data, so that every byte matters in a
    /// round trip. The SOP instance UID is derived from `seed` and `payloadBytes`: the same arguments make
    /// the same file (and the same SOP instance), different ones a different instance.
    public static func writePartTenFile(at path: String, payloadBytes: Int, seed: UInt64 = 42, patientID: String = "PAT-42") throws {
        var generator = SplitMix64(seed: seed)
        var payload = [UInt8](repeating: 0, count: payloadBytes)
        payload.withUnsafeMutableBytes { buffer in
            for index in stride(from: 0, to: payloadBytes - 7, by: 8) {
                buffer.storeBytes(of: generator.next(), toByteOffset: index, as: UInt64.self)
            }
        }
        let bytes = try dicom(
            DICOMFixture(sopInstanceUID: "1.2.999.\(seed).\(payloadBytes)", patientID: patientID, seed: seed),
            privatePayload: payload
        )
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// The Part 10 bytes of `fixture`, with an optional private payload (group 7FD1, just before the pixel data).
    public static func dicom(_ fixture: DICOMFixture, privatePayload: [UInt8] = []) throws -> [UInt8] {
        var writer = DICOMWriter()
        try writer.set(.specificCharacterSet, .CS, .text("ISO_IR 192"))
        try writer.set(.sopClassUID, .UI, .text(fixture.sopClassUID))
        try writer.set(.sopInstanceUID, .UI, .text(fixture.sopInstanceUID))
        if let date = fixture.acquisitionDateTime { try writer.set(.acquisitionDateTime, .DT, .text(date)) }
        try writer.set(.modality, .CS, .text(fixture.modality))
        if let station = fixture.stationName { try writer.set(.stationName, .SH, .text(station)) }
        try writer.set(.patientName, .PN, .text(fixture.patientName))
        try writer.set(.patientID, .LO, .text(fixture.patientID))
        if let body = fixture.bodyPart { try writer.set(.bodyPartExamined, .CS, .text(body)) }
        for (tag, vr, value) in fixture.acquisition { try writer.set(tag, vr, .text(value)) }
        try writer.set(.studyInstanceUID, .UI, .text(fixture.studyInstanceUID))
        try writer.set(.seriesInstanceUID, .UI, .text(fixture.seriesInstanceUID))
        try writer.set(.instanceNumber, .IS, .text(String(fixture.instanceNumber)))
        try writer.set(.imagePositionPatient, .DS, .text("0\\0\\\(fixture.slicePosition.map { "\($0)" } ?? "\(fixture.instanceNumber)")"))
        try writer.set(.imageOrientationPatient, .DS, .text("1\\0\\0\\0\\1\\0"))
        if !privatePayload.isEmpty {
            try writer.set(DICOMTag(0x7FD1, 0x0010), .LO, .text("ATRIUM TEST"))
            try writer.set(DICOMTag(0x7FD1, 0x1000), .OB, .bytes(privatePayload))
        }
        try writer.set(.samplesPerPixel, .US, .uint16([1]))
        try writer.set(.photometricInterpretation, .CS, .text("MONOCHROME2"))
        try writer.set(.rows, .US, .uint16([UInt16(fixture.size)]))
        try writer.set(.columns, .US, .uint16([UInt16(fixture.size)]))
        try writer.set(.bitsAllocated, .US, .uint16([16]))
        try writer.set(.bitsStored, .US, .uint16([12]))
        try writer.set(.highBit, .US, .uint16([11]))
        try writer.set(.pixelRepresentation, .US, .uint16([0]))
        if let (slope, intercept) = fixture.rescale {
            try writer.set(.rescaleIntercept, .DS, .text(intercept))
            try writer.set(.rescaleSlope, .DS, .text(slope))
        }
        var generator = SplitMix64(seed: fixture.seed)
        let pixels = (0..<(fixture.size * fixture.size)).map { _ in UInt16(truncatingIfNeeded: generator.next() & 0x0FFF) }
        try writer.set(.pixelData, .OW, .bytes(pixels.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }))
        return writer.partTen(implementationClassUID: "1.2.999.1")
    }
}

/// What a fixture DICOM object says about itself.
public struct DICOMFixture: Sendable {
    public var sopInstanceUID: String
    public var sopClassUID = "1.2.840.10008.5.1.4.1.1.2"
    public var patientID: String
    public var patientName = "Yamada^Taro"
    public var studyInstanceUID = "1.2.999.100"
    public var seriesInstanceUID = "1.2.999.100.1"
    public var modality = "CT"
    public var instanceNumber = 1
    /// DT, e.g. `20260301101500`.
    public var acquisitionDateTime: String? = "20260301101500"
    public var stationName: String? = "CT-1"
    public var bodyPart: String? = "CHEST"
    /// Acquisition attributes (group 0018) as text values, e.g. `(DICOMTag(0x0018, 0x0060), .DS, "120")`.
    public var acquisition: [(DICOMTag, VR, String)] = [(DICOMTag(0x0018, 0x0060), .DS, "120"), (DICOMTag(0x0018, 0x0050), .DS, "1.25")]
    /// Rows and columns of the pseudo-random 12-bit image.
    public var size = 8
    /// The z of Image Position (Patient); the instance number when `nil`.
    public var slicePosition: Double?
    /// Rescale Slope and Intercept as DS text; none when `nil`.
    public var rescale: (slope: String, intercept: String)?
    public var seed: UInt64 = 1

    public init(sopInstanceUID: String, patientID: String, seed: UInt64 = 1) {
        self.sopInstanceUID = sopInstanceUID
        self.patientID = patientID
        self.seed = seed
    }
}

/// A small deterministic generator for test data.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator from a seed.
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
