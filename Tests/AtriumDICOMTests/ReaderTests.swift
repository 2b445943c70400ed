import AtriumTesting
import Crypto
import Foundation
import Testing

@testable import AtriumDICOM

/// The corpus that `make_corpus.py` writes with pydicom and dcmtk, and what pydicom read back from each file.
final class Corpus: Sendable {
    let directory: TemporaryDirectory
    let oracle: [String: [String: JSONValue]]

    static let shared: Result<Corpus, any Error> = Result { try Corpus() }

    private init() throws {
        directory = try TemporaryDirectory(prefix: "atrium-dicom-corpus")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("make_corpus.py").path
        let (status, output) = try Python.run([script, directory.path])
        guard status == 0 else {
            throw CorpusError(description: "make_corpus.py failed (is pydicom installed? `make pydeps`): \(output)")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory.path)/oracle.json"))
        oracle = try JSONDecoder().decode([String: [String: JSONValue]].self, from: data)
    }

    func bytes(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: "\(directory.path)/\(name).dcm")))
    }
}

private struct CorpusError: Error, CustomStringConvertible {
    let description: String
}

enum JSONValue: Decodable, Equatable {
    case string(String)
    case number(Int)

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int.self) {
            self = .number(number)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    var string: String? { if case .string(let value) = self { value } else { nil } }
    var number: Int? { if case .number(let value) = self { value } else { nil } }
}

@Suite("DICOM reader")
struct ReaderTests {
    static let names = [
        "ct_explicit_le", "mr_implicit_le", "us_big_endian", "cr_deflated", "dx_multiframe_32", "mr_utf8", "ct_latin1",
        "mr_japanese", "ct_private_sequences", "ct_rle", "us_rgb_planar", "ct_signed_12_bits", "us_rgb_rle_multiframe",
        // Made by dcmtk from files pydicom wrote: JPEG-LS (dcmcjpls), big endian (dcmconv) and RLE (dcmcrle).
        "ct_jpegls_signed_12_bits", "ct_jpegls_signed_12_bits_masked", "mr_jpegls_8_bit", "us_jpegls_rgb",
        "us_jpegls_rgb_sample_interleaved", "us_jpegls_rgb_not_interleaved", "xa_jpegls_multiframe_fragments",
        "xa_jpegls_multiframe_no_offset_table", "ct_jpegls_near_lossless", "mr_dcmtk_big_endian", "ct_dcmtk_rle_multiframe",
    ]

    @Test("every corpus file reads back as pydicom reads it", arguments: names)
    func corpus(name: String) throws {
        let corpus = try Corpus.shared.get()
        let expected = try #require(corpus.oracle[name])
        let file = try DICOMReader.read(try corpus.bytes(name))
        let dataset = file.dataset
        #expect(file.transferSyntax.uid == expected["transfer_syntax"]?.string)
        #expect(dataset.string(.patientName) == expected["patient_name"]?.string)
        #expect(dataset.string(.patientID) == expected["patient_id"]?.string)
        #expect(dataset.string(.modality) == expected["modality"]?.string)
        #expect(dataset.string(.sopInstanceUID) == expected["sop_instance_uid"]?.string)
        #expect(dataset.string(.studyInstanceUID) == expected["study_instance_uid"]?.string)
        #expect(dataset.string(.stationName) == expected["station_name"]?.string)
        #expect(dataset.string(.photometricInterpretation) == expected["photometric"]?.string)
        #expect(dataset.integer(.rows) == expected["rows"]?.number)
        #expect(dataset.integer(.columns) == expected["columns"]?.number)
        #expect(dataset.integer(.bitsAllocated) == expected["bits_allocated"]?.number)
        #expect((dataset.integer(.numberOfFrames) ?? 1) == expected["frames"]?.number)
        let metadata = ImageMetadata(file)
        #expect(metadata.deviceID == "STATION-1" && metadata.bodyPart == "CHEST")
        #expect(metadata.acquiredAt == ISO8601DateFormatter().date(from: "2026-11-29T00:00:00Z"), "from Study Date")
        #expect(metadata.frames == expected["frames"]?.number)
        // Pixel data as stored: native bytes, or the encapsulated items as pydicom returns them (without the
        // closing sequence delimiter).
        let pixels = try #require(dataset[.pixelData])
        let stored: [UInt8]
        switch pixels.value {
        case .bytes(let bytes):
            stored = Array(bytes)
        case .fragments(let table, let fragments):
            stored = ([table] + fragments).flatMap { item in
                var out: [UInt8] = [0xFE, 0xFF, 0x00, 0xE0]
                withUnsafeBytes(of: UInt32(item.count).littleEndian) { out += $0 }
                return out + item
            }
        case .sequence:
            Issue.record("pixel data read as a sequence")
            return
        }
        #expect(stored.count == expected["pixel_bytes"]?.number)
        // Big endian OW pixel data: pydicom hands back the bytes as stored too, so the hashes compare as is.
        #expect(sha256(stored) == expected["pixel_sha256"]?.string)
        // Decoded pixels: the same bytes as pydicom's pixel_array (little endian, interleaved, sign-extended).
        let decoded = try PixelDecoder.decode(file)
        #expect(sha256(decoded.bytes) == expected["pixel_array_sha256"]?.string, "decoded pixels differ from pydicom's pixel_array")
        #expect(try Thumbnail.png(of: file).starts(with: [0x89, 0x50, 0x4E, 0x47]))
        if let uid = expected["referenced_sop_instance_uid"]?.string {
            #expect(dataset.sequence(DICOMTag(0x0008, 0x1140)).first?.string(DICOMTag(0x0008, 0x1155)) == uid)
        }
        if let count = expected["private_items"]?.number {
            let items = dataset.sequence(DICOMTag(0x0009, 0x1001))
            #expect(items.count == count)
            #expect(items.first?.string(DICOMTag(0x0009, 0x1010)) == "inside a private sequence")
        }
    }

    @Test("the Japanese name decodes from ISO 2022 IR 87 escape sequences")
    func japanese() throws {
        let corpus = try Corpus.shared.get()
        let file = try DICOMReader.read(try corpus.bytes("mr_japanese"))
        #expect(file.dataset.string(.patientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう")
        let katakana = DICOMCharacterSet(terms: ["ISO 2022 IR 13", "ISO 2022 IR 87"])
        #expect(katakana.decode([0xD4, 0xCF, 0xC0, 0xDE, 0x5E, 0xC0, 0xDB, 0xB3][...], personName: true) == "ﾔﾏﾀﾞ^ﾀﾛｳ")
    }

    @Test("truncation at every byte offset is refused or yields fewer elements, never a crash or a hang", .timeLimit(.minutes(5)), arguments: ["ct_private_sequences", "ct_rle", "cr_deflated", "mr_implicit_le"])
    func truncation(name: String) throws {
        let corpus = try Corpus.shared.get()
        let bytes = try corpus.bytes(name)
        let full = try DICOMReader.read(bytes)
        var refused = 0
        for length in 0..<bytes.count {
            do {
                let partial = try DICOMReader.read(Array(bytes[0..<length]))
                if full.transferSyntax.deflated && partial.dataset.tags.count == full.dataset.tags.count {
                    // Only bytes after the end of the deflate stream were cut: the content is all there.
                    #expect(partial.dataset.bytes(.pixelData) == full.dataset.bytes(.pixelData))
                } else {
                    #expect(partial.dataset.tags.count < full.dataset.tags.count, "a \(length)-byte prefix read as the whole file")
                    #expect(partial.dataset[.pixelData] == nil, "a \(length)-byte prefix kept the pixel data")
                }
            } catch {
                refused += 1
            }
        }
        #expect(refused > bytes.count / 2)
    }

    @Test("malformed inputs are refused with the offset and the reason")
    func malformed() throws {
        let corpus = try Corpus.shared.get()
        let good = try corpus.bytes("ct_private_sequences")
        let metaEnd = try #require(DICOMReader.read(good).dataset.tags.first.flatMap { tag in try? DICOMReader.read(good).dataset[tag]?.offset })

        // A stray leading byte: no DICM at 128, and not a bare data set either.
        #expect(throws: DICOMError.self) { try DICOMReader.read([0x00] + good) }
        // A bad VR in the first data set element.
        var badVR = good
        badVR[metaEnd + 4] = 0x7A
        badVR[metaEnd + 5] = 0x7A
        #expect { try DICOMReader.read(badVR) } throws: { ($0 as? DICOMError)?.reason.contains("no valid VR") == true }
        // A length far past the end.
        var longLength = good
        longLength[metaEnd + 6] = 0xFF
        longLength[metaEnd + 7] = 0x7F
        #expect { try DICOMReader.read(longLength) } throws: { error in
            guard let error = error as? DICOMError else { return false }
            return error.offset == metaEnd && error.reason.contains("remain")
        }
        // Sequences nested past the limit.
        var deep: [UInt8] = []
        for _ in 0..<(DICOMReader.maximumDepth + 2) {
            deep += [0x08, 0x00, 0x40, 0x11, 0x53, 0x51, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]
        }
        let wrapped = [UInt8](repeating: 0, count: 128) + Array("DICM".utf8) + metaBytes(syntax: "1.2.840.10008.1.2.1") + deep
        #expect { try DICOMReader.read(wrapped) } throws: { ($0 as? DICOMError)?.reason.contains("deeper") == true }
    }

    @Test("a sequence delimiter's bytes inside a fragment are data, because fragments are walked by length")
    func delimiterInsideFragment() throws {
        var body: [UInt8] = []
        body += [0xE0, 0x7F, 0x10, 0x00] + Array("OB".utf8) + [0, 0, 0xFF, 0xFF, 0xFF, 0xFF]
        body += [0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]  // empty offset table
        let fragment: [UInt8] = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0, 1, 2, 3, 4]
        body += [0xFE, 0xFF, 0x00, 0xE0, UInt8(fragment.count), 0, 0, 0] + fragment
        body += [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]
        let file = [UInt8](repeating: 0, count: 128) + Array("DICM".utf8) + metaBytes(syntax: "1.2.840.10008.1.2.5") + body
        let parsed = try DICOMReader.read(file)
        guard case .fragments(_, let fragments)? = parsed.dataset[.pixelData]?.value else {
            Issue.record("no fragments")
            return
        }
        #expect(fragments.map(Array.init) == [fragment])
    }

    @Test("a bare implicit VR little endian data set (no preamble, no meta) is read")
    func bare() throws {
        var body: [UInt8] = []
        func element(_ group: UInt16, _ element: UInt16, _ value: String) {
            var bytes = Array(value.utf8)
            if bytes.count % 2 == 1 { bytes.append(0x20) }
            withUnsafeBytes(of: group.littleEndian) { body += $0 }
            withUnsafeBytes(of: element.littleEndian) { body += $0 }
            withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { body += $0 }
            body += bytes
        }
        element(0x0008, 0x0060, "CT")
        element(0x0010, 0x0020, "PAT-7")
        let file = try DICOMReader.read(body)
        #expect(file.dataset.string(.patientID) == "PAT-7")
        #expect(!file.hasPreamble)
    }

    private func metaBytes(syntax: String) -> [UInt8] {
        var uid = Array(syntax.utf8)
        if uid.count % 2 == 1 { uid.append(0) }
        var out: [UInt8] = [0x02, 0x00, 0x10, 0x00] + Array("UI".utf8)
        withUnsafeBytes(of: UInt16(uid.count).littleEndian) { out += $0 }
        return out + uid
    }

    private func sha256(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}

@Suite("Fuzzer findings, kept as regressions")
struct FuzzRegressionTests {
    /// Every file in `Regressions/` once crashed the fuzz target or exhausted its memory.
    @Test("each past finding is refused cheaply", arguments: ["rle-memory-bomb.dcm"])
    func finding(name: String) throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Regressions/\(name)").path
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        guard let file = try? DICOMReader.read(bytes) else { return }
        _ = ImageMetadata(file)
        #expect(throws: PixelError.self) { try PixelDecoder.decode(file) }
    }
}
