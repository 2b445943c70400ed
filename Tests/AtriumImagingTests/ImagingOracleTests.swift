import AtriumImaging
import Foundation
import Testing

/// One scipy.ndimage / numpy result from `make_oracle.py`.
private struct OracleCase: Decodable, Sendable {
    let name: String
    let op: String
    let params: [Double]
    let input: String
    let shape: [Int]
    let expected: String
    let expectedShape: [Int]

    private enum CodingKeys: String, CodingKey {
        case name, op, params, input, shape, expected
        case expectedShape = "expected_shape"
    }
}

/// The oracle's cases and their arrays, read into memory; made once per test process.
private struct Oracle: Sendable {
    let cases: [OracleCase]
    let arrays: [String: [Float]]

    static func make() throws -> Oracle {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("make_oracle.py")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("atrium-imaging-oracle-\(UUID().uuidString)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path, directory.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw OracleFailure(message: "make_oracle.py failed: \(output)") }
        defer { try? FileManager.default.removeItem(at: directory) }
        let manifest = try Data(contentsOf: directory.appendingPathComponent("manifest.json"))
        let cases = try JSONDecoder().decode([OracleCase].self, from: manifest)
        var arrays: [String: [Float]] = [:]
        for file in Set(cases.flatMap { [$0.input, $0.expected] }) {
            let data = try Data(contentsOf: directory.appendingPathComponent(file))
            arrays[file] = data.withUnsafeBytes { raw in
                (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        }
        return Oracle(cases: cases, arrays: arrays)
    }

    func cases(_ op: String) -> [OracleCase] { cases.filter { $0.op == op } }

    func floats(_ file: String) throws -> [Float] {
        guard let array = arrays[file] else { throw OracleFailure(message: "\(file) is not in the manifest") }
        return array
    }

    func image(_ oracleCase: OracleCase) throws -> Image2D {
        try Image2D(rows: oracleCase.shape[0], columns: oracleCase.shape[1], pixels: floats(oracleCase.input))
    }

    func volume(_ oracleCase: OracleCase) throws -> Volume {
        try Volume(slices: oracleCase.shape[0], rows: oracleCase.shape[1], columns: oracleCase.shape[2], voxels: floats(oracleCase.input))
    }

    /// Checks `actual` against the case's expected array: same shape, and every value within 1e-4 relative or 1e-3 absolute.
    func check(_ actual: Image2D, against oracleCase: OracleCase, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = try floats(oracleCase.expected)
        #expect([actual.rows, actual.columns] == oracleCase.expectedShape, "\(oracleCase.name): shape", sourceLocation: sourceLocation)
        #expect(actual.pixels.count == expected.count, "\(oracleCase.name): count", sourceLocation: sourceLocation)
        var mismatches: [String] = []
        for (index, (a, e)) in zip(actual.pixels, expected).enumerated() where !(abs(a - e) <= max(1e-4 * abs(e), 1e-3)) {
            mismatches.append("[\(index / actual.columns), \(index % actual.columns)] \(a) vs \(e)")
        }
        #expect(mismatches.isEmpty, "\(oracleCase.name): \(mismatches.count) mismatches, e.g. \(mismatches.prefix(5))", sourceLocation: sourceLocation)
    }
}

private struct OracleFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Made on first use, shared by every test in the process.
private let oracle = Result { try Oracle.make() }

@Suite("AtriumImaging against scipy.ndimage and numpy")
struct ImagingOracleTests {
    @Test("smooth matches gaussian_filter(mode='nearest', truncate=4.0) for sigma 0.5, 1, 1.5 and 3")
    func smooth() throws {
        let oracle = try oracle.get()
        let cases = oracle.cases("smooth")
        #expect(cases.count > 20)
        for oracleCase in cases {
            try oracle.check(oracle.image(oracleCase).smooth(sigma: Float(oracleCase.params[0])), against: oracleCase)
        }
    }

    @Test("derivative(axis:) matches scipy.ndimage.sobel along that axis")
    func sobelComponents() throws {
        let oracle = try oracle.get()
        for oracleCase in oracle.cases("sobel") {
            try oracle.check(oracle.image(oracleCase).derivative(axis: Int(oracleCase.params[0])), against: oracleCase)
        }
    }

    @Test("derivative() matches hypot of the two sobel components")
    func sobelMagnitude() throws {
        let oracle = try oracle.get()
        for oracleCase in oracle.cases("magnitude") {
            try oracle.check(oracle.image(oracleCase).derivative(), against: oracleCase)
        }
    }

    @Test("laplacian matches scipy.ndimage.laplace")
    func laplacian() throws {
        let oracle = try oracle.get()
        for oracleCase in oracle.cases("laplace") {
            try oracle.check(oracle.image(oracleCase).laplacian(), against: oracleCase)
        }
    }

    @Test("lines matches the largest absolute scipy.ndimage.convolve response of the four line masks")
    func lines() throws {
        let oracle = try oracle.get()
        for oracleCase in oracle.cases("lines") {
            try oracle.check(oracle.image(oracleCase).lines(), against: oracleCase)
        }
    }

    @Test("bandpass matches the difference of two gaussian_filter results")
    func bandpass() throws {
        let oracle = try oracle.get()
        for oracleCase in oracle.cases("bandpass") {
            let image = try oracle.image(oracleCase)
            try oracle.check(image.bandpass(sigmaLow: Float(oracleCase.params[0]), sigmaHigh: Float(oracleCase.params[1])), against: oracleCase)
        }
    }

    @Test("sum, MIP and MinIP match numpy's sum, max and min along each axis")
    func projections() throws {
        let oracle = try oracle.get()
        var checked = 0
        for op in ["sum", "max", "min"] {
            for oracleCase in oracle.cases(op) {
                let volume = try oracle.volume(oracleCase)
                let axis = Int(oracleCase.params[0])
                let result = switch op {
                case "sum": try volume.sumProjection(axis: axis)
                case "max": try volume.mip(axis: axis)
                default: try volume.minip(axis: axis)
                }
                try oracle.check(result, against: oracleCase)
                checked += 1
            }
        }
        #expect(checked == 36)
    }
}
