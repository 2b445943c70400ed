import AtriumTesting
import Foundation
import Testing

@testable import AtriumDICOM

@Suite("JPEG-LS")
struct JPEGLSTests {
    /// An image for the encoder, described as a data set would describe it.
    struct Image: Sendable, CustomTestStringConvertible {
        let name: String
        let rows: Int, columns: Int, samples: Int, bits: Int, stored: Int, signed: Bool

        var testDescription: String { name }

        var layout: PixelLayout {
            get throws { try PixelLayout(JPEGLSTests.dataset(rows: rows, columns: columns, samples: samples, bits: bits, stored: stored, signed: signed)) }
        }

        /// One frame in `PixelDecoder`'s layout: noise over a gradient, a flat block (JPEG-LS run mode), and the
        /// extreme values; signed samples sign-extended from Bits Stored.
        func pixels(seed: UInt64 = 1) -> [UInt8] {
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15 &* (UInt64(rows * 7 + columns * 3 + stored) &+ seed)
            let low = signed ? -(1 << (stored - 1)) : 0
            let span = 1 << stored
            var out: [UInt8] = []
            for row in 0..<rows {
                for column in 0..<columns {
                    for sample in 0..<samples {
                        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                        let noise = Int(state >> 61)
                        var value = (row * 5 + column * 3 + sample * 40 + noise) % span
                        if row < rows / 3 && column < columns / 2 { value = 3 % span }
                        if row == rows - 1 { value = column % 2 == 0 ? 0 : span - 1 }
                        let signedValue = value + low
                        for byte in 0..<bits / 8 { out.append(UInt8(truncatingIfNeeded: signedValue >> (8 * byte))) }
                    }
                }
            }
            return out
        }
    }

    static let images: [Image] = [
        Image(name: "8-bit grey", rows: 33, columns: 47, samples: 1, bits: 8, stored: 8, signed: false),
        Image(name: "16-bit grey, 16 bits stored", rows: 64, columns: 50, samples: 1, bits: 16, stored: 16, signed: false),
        Image(name: "16-bit signed CT, 12 bits stored", rows: 64, columns: 64, samples: 1, bits: 16, stored: 12, signed: true),
        Image(name: "16-bit signed, 16 bits stored", rows: 20, columns: 30, samples: 1, bits: 16, stored: 16, signed: true),
        Image(name: "16 bits allocated, 8 stored", rows: 17, columns: 9, samples: 1, bits: 16, stored: 8, signed: false),
        Image(name: "8-bit signed, 6 bits stored", rows: 10, columns: 11, samples: 1, bits: 8, stored: 6, signed: true),
        Image(name: "1 bit stored in 8", rows: 8, columns: 8, samples: 1, bits: 8, stored: 1, signed: false),
        Image(name: "8-bit RGB", rows: 31, columns: 29, samples: 3, bits: 8, stored: 8, signed: false),
        Image(name: "16-bit RGB, 10 bits stored", rows: 12, columns: 14, samples: 3, bits: 16, stored: 10, signed: false),
    ]

    @Test("encoding then decoding gives back every frame bit for bit, through PixelDecoder", arguments: images)
    func roundTrip(image: Image) throws {
        var layout = try image.layout
        let frames = [image.pixels(), image.pixels(seed: 2)]
        layout.frames = frames.count
        let codestreams = try frames.map { try JPEGLS.encode($0, layout: layout) }
        for codestream in codestreams {
            #expect(codestream.starts(with: [0xFF, 0xD8]) && codestream.count % 2 == 0)
            #expect(codestream.suffix(2) == [0xFF, 0xD9])
        }
        var dataset = try Self.dataset(rows: image.rows, columns: image.columns, samples: image.samples, bits: image.bits, stored: image.stored, signed: image.signed)
        dataset.append(DataElement(tag: .numberOfFrames, vr: .IS, value: .bytes(Array("2 ".utf8)[...]), offset: 0))
        dataset.append(DataElement(tag: .pixelData, vr: .OB, value: .fragments(offsetTable: [], fragments: codestreams.map { $0[...] }), offset: 0))
        let file = DICOMFile(meta: DataSet(littleEndian: true), dataset: dataset, transferSyntax: TransferSyntax(uid: TransferSyntax.jpegLSLossless), hasPreamble: true)
        let decoded = try PixelDecoder.decode(file)
        #expect(decoded.bytes == frames.flatMap { $0 })
    }

    @Test("libjpeg, an independent decoder (pylibjpeg), reads the encoder's codestreams as the samples masked to Bits Stored")
    func independentDecoder() throws {
        let directory = try TemporaryDirectory(prefix: "atrium-jpegls")
        for (index, image) in Self.images.enumerated() {
            let layout = try image.layout
            let pixels = image.pixels()
            try Data(try JPEGLS.encode(pixels, layout: layout)).write(to: URL(fileURLWithPath: "\(directory.path)/\(index).jls"))
            // libjpeg gives 8-bit samples up to 8 bits of precision and 16-bit samples beyond.
            let mask = (1 << image.stored) - 1
            var expected: [UInt8] = []
            for sample in 0..<layout.samplesPerFrame {
                var value = 0
                for byte in 0..<layout.bytesPerSample { value |= Int(pixels[sample * layout.bytesPerSample + byte]) << (8 * byte) }
                value &= mask
                expected.append(UInt8(value & 0xFF))
                if image.stored > 8 { expected.append(UInt8(value >> 8)) }
            }
            try Data(expected).write(to: URL(fileURLWithPath: "\(directory.path)/\(index).raw"))
        }
        let script = """
            import sys, numpy as np
            from libjpeg import decode
            for i in range(int(sys.argv[2])):
                got = decode(open(f"{sys.argv[1]}/{i}.jls", "rb").read())
                want = open(f"{sys.argv[1]}/{i}.raw", "rb").read()
                print(i, "ok" if got.astype(got.dtype.newbyteorder("<")).tobytes() == want else f"differs {got.dtype} {got.shape}")
            """
        let (status, output) = try Python.run(["-c", script, directory.path, "\(Self.images.count)"])
        #expect(status == 0, "is pylibjpeg-libjpeg installed? `make pydeps`: \(output)")
        let expected = Self.images.indices.map { "\($0) ok" }.joined(separator: "\n")
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == expected)
    }

    @Test("the encoder refuses what JPEG-LS cannot code and frames of the wrong size")
    func encoderRefusals() throws {
        let wide = try PixelLayout(Self.dataset(rows: 2, columns: 2, samples: 1, bits: 32, stored: 32, signed: false))
        #expect { try JPEGLS.encode([UInt8](repeating: 0, count: 16), layout: wide) } throws: { ($0 as? PixelError)?.unsupported == true }
        let grey = try PixelLayout(Self.dataset(rows: 2, columns: 2, samples: 1, bits: 16, stored: 16, signed: false))
        #expect(throws: PixelError.self) { try JPEGLS.encode([UInt8](repeating: 0, count: 7), layout: grey) }
        #expect(throws: PixelError.self) { try JPEGLS.encode([], layout: grey) }
    }

    @Test("a JPEG-LS frame cut short or with any byte changed is refused or decodes to the image's size, never a crash or a hang", .timeLimit(.minutes(5)), arguments: [
        "ct_jpegls_signed_12_bits", "us_jpegls_rgb", "mr_jpegls_8_bit",
    ])
    func damagedCodestream(name: String) throws {
        let file = try DICOMReader.read(try Corpus.shared.get().bytes(name))
        let (table, fragments) = try #require(Self.fragments(file))
        let codestream = Array(fragments.joined())
        let full = try PixelDecoder.decode(file).bytes
        var refused = 0
        for length in 0..<codestream.count {
            if let decoded = try? PixelDecoder.decode(Self.replacing(file, table: table, with: [Array(codestream.prefix(length))])) {
                #expect(decoded.bytes == full, "a codestream cut to \(length) bytes decoded to other pixels")
            } else {
                refused += 1
            }
        }
        // Only the EOI marker (and dcmtk's padding before it) may go without loss.
        #expect(refused >= codestream.count - 3)
        let size = full.count
        for index in codestream.indices {
            for value: UInt8 in [0x00, 0xFF, codestream[index] ^ 0x5A] {
                var damaged = codestream
                damaged[index] = value
                if let decoded = try? PixelDecoder.decode(Self.replacing(file, table: table, with: [damaged])) {
                    #expect(decoded.bytes.count == size)
                }
            }
        }
    }

    @Test("a scan cut off a few bytes in is refused at once, where CharLS alone would spin for seconds")
    func cutScan() throws {
        let file = try DICOMReader.read(try Corpus.shared.get().bytes("mr_jpegls_8_bit"))
        let (table, fragments) = try #require(Self.fragments(file))
        // SOI, SOF55 and SOS take 25 bytes; 26 to 30 end the buffer inside a Golomb code's zero bits.
        // Measured in this thread's CPU time, which a busy machine does not stretch: CharLS spinning through 2^32
        // zero bits costs several seconds of it, a refusal microseconds.
        for length in 26...30 {
            let started = ThreadCPU.now()
            #expect(throws: PixelError.self) { try PixelDecoder.decode(Self.replacing(file, table: table, with: [Array(fragments.joined().prefix(length))])) }
            #expect(ThreadCPU.now() - started < 1, "\(length) bytes: \(ThreadCPU.now() - started) s of CPU")
        }
    }

    @Test("a JPEG-LS header that disagrees with the data set is refused, naming both")
    func headerMismatch() throws {
        let file = try DICOMReader.read(try Corpus.shared.get().bytes("mr_jpegls_8_bit"))
        let (table, fragments) = try #require(Self.fragments(file))
        let codestream = Array(fragments.joined())
        // SOF55: FFF7, length (2), precision P (1), height (2), width (2), components (1).
        let sof = try #require(codestream.indices.first { codestream[$0] == 0xFF && codestream[$0 + 1] == 0xF7 })
        for (offset, value) in [(4, UInt8(12)), (6, UInt8(41)), (8, UInt8(47))] {
            var changed = codestream
            changed[sof + offset] = value
            #expect { try PixelDecoder.decode(Self.replacing(file, table: table, with: [changed])) } throws: { error in
                (error as? PixelError)?.description.contains("the data set says") == true
            }
        }
        // One component in the codestream, three in the data set.
        var colour = file
        colour.dataset.append(DataElement(tag: .samplesPerPixel, vr: .US, value: .bytes([3, 0]), offset: 0))
        #expect { try PixelDecoder.decode(colour) } throws: { ($0 as? PixelError)?.description.contains("the data set says") == true }
    }

    @Test("a tiny codestream claiming a 65535×65535 image is refused before anything is allocated for it")
    func memoryBomb() throws {
        var file = try DICOMReader.read(try Corpus.shared.get().bytes("mr_jpegls_8_bit"))
        let (table, fragments) = try #require(Self.fragments(file))
        var codestream = Array(fragments.joined())
        let sof = try #require(codestream.indices.first { codestream[$0] == 0xFF && codestream[$0 + 1] == 0xF7 })
        codestream.replaceSubrange(sof + 5..<sof + 9, with: [0xFF, 0xFF, 0xFF, 0xFF])
        file.dataset.append(DataElement(tag: .rows, vr: .US, value: .bytes([0xFF, 0xFF]), offset: 0))
        file.dataset.append(DataElement(tag: .columns, vr: .US, value: .bytes([0xFF, 0xFF]), offset: 0))
        #expect { try PixelDecoder.decode(Self.replacing(file, table: table, with: [codestream])) } throws: { error in
            (error as? PixelError)?.description.contains("cannot code") == true || (error as? PixelError)?.description.contains("too short") == true
        }
    }

    @Test("frames spread over fragments are found by the offset table, else by their SOI markers; a missing one is refused")
    func framesAcrossFragments() throws {
        let corpus = try Corpus.shared.get()
        let file = try DICOMReader.read(try corpus.bytes("xa_jpegls_multiframe_fragments"))
        let (table, fragments) = try #require(Self.fragments(file))
        #expect(fragments.count > 3 && table.count == 12)
        let expected = try PixelDecoder.decode(file).bytes
        // An offset table that names no fragment start: the SOI markers still say where frames begin.
        let nonsense = try PixelDecoder.decode(Self.replacing(file, table: [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0], with: fragments.map(Array.init)))
        #expect(nonsense.bytes == expected)
        // Without the second frame's first fragment there are two SOI markers for three frames.
        let second = try #require(fragments.indices.dropFirst().first { fragments[$0].starts(with: [0xFF, 0xD8]) })
        var missing = fragments.map(Array.init)
        missing.remove(at: second)
        #expect(throws: PixelError.self) { try PixelDecoder.decode(Self.replacing(file, table: [], with: missing)) }
        // Fewer fragments than frames.
        #expect(throws: PixelError.self) { try PixelDecoder.decode(Self.replacing(file, table: [], with: [Array(fragments[0])])) }
    }

    static func dataset(rows: Int, columns: Int, samples: Int, bits: Int, stored: Int, signed: Bool) throws -> DataSet {
        var dataset = DataSet(littleEndian: true)
        func us(_ tag: DICOMTag, _ value: Int) {
            dataset.append(DataElement(tag: tag, vr: .US, value: .bytes([UInt8(value & 0xFF), UInt8(value >> 8)]), offset: 0))
        }
        us(.samplesPerPixel, samples)
        us(.rows, rows)
        us(.columns, columns)
        us(.bitsAllocated, bits)
        us(.bitsStored, stored)
        us(.highBit, stored - 1)
        us(.pixelRepresentation, signed ? 1 : 0)
        let photometric = samples == 3 ? "RGB " : "MONOCHROME2 "
        dataset.append(DataElement(tag: .photometricInterpretation, vr: .CS, value: .bytes(Array(photometric.utf8)[...]), offset: 0))
        return dataset
    }

    static func fragments(_ file: DICOMFile) -> (ArraySlice<UInt8>, [ArraySlice<UInt8>])? {
        guard case .fragments(let table, let fragments)? = file.dataset[.pixelData]?.value else { return nil }
        return (table, fragments)
    }

    static func replacing(_ file: DICOMFile, table: ArraySlice<UInt8>, with fragments: [[UInt8]]) -> DICOMFile {
        var file = file
        file.dataset.append(DataElement(tag: .pixelData, vr: .OB, value: .fragments(offsetTable: table, fragments: fragments.map { $0[...] }), offset: 0))
        return file
    }
}

/// CPU time of the calling thread, in seconds.
private enum ThreadCPU {
    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }
}
