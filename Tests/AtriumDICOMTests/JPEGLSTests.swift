import Testing

@testable import AtriumDICOM

@Suite("JPEG-LS")
struct JPEGLSTests {
    @Test("a JPEG-LS frame cut short or with any byte changed is refused or decodes to the image's size, never a crash", arguments: [
        "ct_jpegls_signed_12_bits", "us_jpegls_rgb", "mr_jpegls_8_bit",
    ])
    func damagedCodestream(name: String) throws {
        let file = try DICOMReader.read(try Corpus.shared.get().bytes(name))
        let (table, fragments) = try #require(Self.fragments(file))
        let codestream = Array(fragments.joined())
        let full = try PixelDecoder.decode(file).bytes
        let started = ContinuousClock.now
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
        #expect(ContinuousClock.now - started < .seconds(60))
    }

    @Test("a scan cut off a few bytes in is refused at once, where CharLS alone would spin for seconds")
    func cutScan() throws {
        let file = try DICOMReader.read(try Corpus.shared.get().bytes("mr_jpegls_8_bit"))
        let (table, fragments) = try #require(Self.fragments(file))
        // SOI, SOF55 and SOS take 25 bytes; 26 to 30 end the buffer inside a Golomb code's zero bits.
        for length in 26...30 {
            let started = ContinuousClock.now
            #expect(throws: PixelError.self) { try PixelDecoder.decode(Self.replacing(file, table: table, with: [Array(fragments.joined().prefix(length))])) }
            #expect(ContinuousClock.now - started < .seconds(1))
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
