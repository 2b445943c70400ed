import AtriumTesting
import Foundation
import Testing

@testable import AtriumDICOM

@Suite("Transcoder")
struct TranscoderTests {
    @Test("every corpus file re-encodes to every target, its pixels decoding to the stored object's", arguments: ReaderTests.names, Transcoder.Target.allCases)
    func roundTrip(name: String, target: Transcoder.Target) throws {
        let source = try Corpus.shared.get().bytes(name)
        let file = try DICOMReader.read(source)
        let expected = try PixelDecoder.decode(file)
        if target == .jpegLSLossless && expected.layout.bitsAllocated != 8 && expected.layout.bitsAllocated != 16 {
            #expect { try Transcoder.transcode(source, to: target) } throws: { ($0 as? TranscodeError)?.kind == .unsupported }
            return
        }
        let (bytes, uid) = try Transcoder.transcode(source, to: target)
        #expect(uid == target.transferSyntaxUID)
        if file.transferSyntax.uid == uid {
            #expect(bytes == source, "an object already in the target syntax comes back as it was")
            return
        }
        let output = try DICOMReader.read(bytes)
        #expect(output.hasPreamble && output.transferSyntax.uid == uid)
        #expect(try Self.metaGroupLength(bytes) == Self.metaEnd(bytes) - 144, "(0002,0000) counts the meta group's bytes")
        #expect(output.meta.string(.mediaStorageSOPClassUID) == file.meta.string(.mediaStorageSOPClassUID))
        #expect(output.meta.string(.mediaStorageSOPInstanceUID) == file.meta.string(.mediaStorageSOPInstanceUID))
        #expect(output.meta.string(Transcoder.implementationClassUIDTag) == Transcoder.implementationClassUID)
        #expect(output.meta.string(Transcoder.implementationVersionTag) == DICOMWriter.implementationVersion)

        let decoded = try PixelDecoder.decode(output)
        var layout = expected.layout
        layout.planarConfiguration = 0
        #expect(decoded.layout == layout)
        #expect(decoded.bytes == expected.bytes, "decoded pixels differ")
        if target == .jpegLSLossless {
            guard case .fragments(let table, let fragments)? = output.dataset[.pixelData]?.value else {
                Issue.record("JPEG-LS pixel data is not encapsulated")
                return
            }
            #expect(fragments.count == layout.frames && table.count == 4 * layout.frames, "a fragment per frame, each in the offset table")
        } else {
            #expect(output.dataset[.pixelData]?.vr == (layout.bitsAllocated > 8 ? .OW : .OB))
        }
        #expect(Self.tags(output.dataset) == Self.tags(file.dataset), "every element is kept, in ascending order")
        if layout.samplesPerPixel > 1 { #expect(output.dataset.integer(.planarConfiguration) == 0) }
    }

    @Test("big endian values are swapped by VR, odd values padded, sequences of either length kept")
    func bigEndianValues() throws {
        let source = HandMade.partTen(HandMade.bigEndian, syntax: TransferSyntax.explicitBigEndian.uid)
        for target in Transcoder.Target.allCases {
            let output = try DICOMReader.read(try Transcoder.transcode(source, to: target).bytes)
            #expect(output.dataset[.pixelData] == nil)
            for element in HandMade.bigEndian {
                if case .sequence = element.value { continue }
                let expected = HandMade.encodeValue(element.value, bigEndian: false)
                #expect(output.dataset.bytes(element.tag).map(Array.init) == expected + (expected.count % 2 == 1 ? [element.padding] : []), "\(element.tag)")
                #expect(output.dataset[element.tag]?.vr == element.vr)
            }
            #expect(output.dataset.integer(DICOMTag(0x0018, 0x6020)) == -7)
            #expect(output.dataset.doubles(DICOMTag(0x0008, 0x1163)) == [0.5, -1.25])
            #expect(output.dataset.sequence(DICOMTag(0x0008, 0x1140)).first?.string(DICOMTag(0x0008, 0x1155)) == "1.2.3.4")
            #expect(output.dataset.sequence(DICOMTag(0x0040, 0x0275)).first?.integer(DICOMTag(0x0028, 0x0010)) == 0x0102)
        }
    }

    @Test("implicit VR values longer than their VR allows become UN; pixel-value US or SS follows Pixel Representation")
    func implicitValues() throws {
        let source = HandMade.partTen(HandMade.implicit, syntax: TransferSyntax.implicitLittleEndian.uid)
        let bytes = try Transcoder.transcode(source, to: .explicitLittleEndian).bytes
        let output = try DICOMReader.read(bytes)
        let comments = try #require(output.dataset[DICOMTag(0x0010, 0x4000)])
        #expect(comments.vr == .LT, "the reader takes a known tag's VR for UN")
        #expect(output.dataset.bytes(comments.tag)?.count == 70_002)
        #expect(Array(bytes[comments.offset + 4..<comments.offset + 6]) == Array("UN".utf8), "written as UN")
        #expect(output.dataset[DICOMTag(0x0028, 0x0106)]?.vr == .SS)
        #expect(output.dataset.integer(DICOMTag(0x0028, 0x0106)) == -5)
        #expect(output.dataset.sequence(DICOMTag(0x0009, 0x1004)).count == 1, "a private sequence of undefined length stays a sequence")
        #expect(output.dataset.bytes(DICOMTag(0x0009, 0x1003)).map(Array.init) == [1, 2, 3, 0])

        // A bare data set (no preamble, no meta): the meta is made from its SOP Class and Instance UIDs.
        let bare = HandMade.implicit.flatMap { HandMade.encode($0, bigEndian: false, explicit: false) }
        let fromBare = try DICOMReader.read(try Transcoder.transcode(bare, to: .explicitLittleEndian).bytes)
        #expect(fromBare.hasPreamble && fromBare.meta.string(.mediaStorageSOPInstanceUID) == "2.25.78")
        #expect(fromBare.meta.string(.mediaStorageSOPClassUID) == "1.2.840.10008.5.1.4.1.1.7")
        #expect(Self.tags(fromBare.dataset) == Self.tags(output.dataset))
    }

    @Test("pydicom reads every output in its target syntax, with the source's pixel_array and elements; dcmtk parses and decodes it")
    func independentReaders() throws {
        let corpus = try Corpus.shared.get()
        let directory = try TemporaryDirectory(prefix: "atrium-transcode")
        var sources = ReaderTests.names.map { (name: $0, path: "\(corpus.directory.path)/\($0).dcm") }
        for (name, elements, syntax) in [
            ("hand_big_endian", HandMade.bigEndian, TransferSyntax.explicitBigEndian.uid),
            ("hand_implicit", HandMade.implicit, TransferSyntax.implicitLittleEndian.uid),
        ] {
            let path = "\(directory.path)/\(name).dcm"
            try Data(HandMade.partTen(elements, syntax: syntax)).write(to: URL(fileURLWithPath: path))
            sources.append((name, path))
        }
        var manifest: [[String: String]] = []
        for source in sources {
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: source.path)))
            for target in Transcoder.Target.allCases {
                let result = Result { () throws(TranscodeError) in try Transcoder.transcode(bytes, to: target).bytes }
                // 32 bits allocated to JPEG-LS: the round trip test expects that refusal.
                if case .failure(let error) = result, error.kind == .unsupported { continue }
                let output = try result.get()
                let path = "\(directory.path)/\(source.name).\(target).dcm"
                try Data(output).write(to: URL(fileURLWithPath: path))
                manifest.append(["name": "\(source.name) \(target)", "source": source.path, "output": path, "target": target.transferSyntaxUID])
            }
        }
        #expect(manifest.count == sources.count * 3 - 1)
        let manifestPath = "\(directory.path)/manifest.json"
        try JSONEncoder().encode(manifest).write(to: URL(fileURLWithPath: manifestPath))
        let (status, output) = try Python.run(["-c", Self.oracle, manifestPath, directory.path])
        #expect(status == 0, "\(output)")
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines == manifest.map { "ok \($0["name"]!)" }, "\(lines.filter { !$0.hasPrefix("ok ") })")
    }

    @Test("unsigned samples with bits set above Bits Stored keep them in JPEG-LS (coded at Bits Allocated)")
    func bitsAboveBitsStored() throws {
        // ct_explicit_le holds values up to 4000 in 16 bits; saying 8 bits stored leaves bits above them.
        var source = try Corpus.shared.get().bytes("ct_explicit_le")
        let offset = try #require(DICOMReader.read(source).dataset[.bitsStored]?.offset)
        source[offset + 8] = 8
        let expected = try PixelDecoder.decode(DICOMReader.read(source))
        #expect(expected.bytes.enumerated().contains { $0.offset % 2 == 1 && $0.element != 0 })
        let output = try DICOMReader.read(try Transcoder.transcode(source, to: .jpegLSLossless).bytes)
        let decoded = try PixelDecoder.decode(output)
        #expect(decoded.layout == expected.layout && decoded.bytes == expected.bytes)
    }

    @Test("objects whose pixels are not decoded here are refused as unsupported, for every target")
    func undecodedSyntax() throws {
        let rle = try Corpus.shared.get().bytes("ct_rle")
        let file = try DICOMReader.read(rle)
        let start = try #require(file.dataset.tags.first.flatMap { file.dataset[$0]?.offset })
        let jpeg = HandMade.partTen([], syntax: "1.2.840.10008.1.2.4.50") + rle[start...]
        for target in Transcoder.Target.allCases {
            #expect { try Transcoder.transcode(jpeg, to: target) } throws: { error in
                let error = error as? TranscodeError
                return error?.kind == .unsupported && error?.reason.contains("JPEG Baseline") == true
            }
        }
    }

    @Test("malformed input is refused with a typed error, never a crash or a hang: garbage, every truncation, impossible pixel descriptions", .timeLimit(.minutes(5)))
    func malformed() throws {
        let corpus = try Corpus.shared.get()
        var generator = SplitMix64(seed: 11)
        let garbage = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let preamble = [UInt8](repeating: 0, count: 128) + Array("DICM".utf8)
        for input in [[], [0], garbage, preamble, preamble + garbage, preamble + HandMade.meta(syntax: TransferSyntax.implicitLittleEndian.uid) + garbage] {
            for target in Transcoder.Target.allCases {
                #expect { try Transcoder.transcode(input, to: target) } throws: { ($0 as? TranscodeError)?.kind == .malformed }
            }
        }
        for name in ["ct_private_sequences", "us_rgb_rle_multiframe", "cr_deflated", "mr_jpegls_8_bit", "us_big_endian"] {
            let bytes = try corpus.bytes(name)
            let stored = try DICOMReader.read(bytes).transferSyntax.uid
            var refused = 0
            for length in 0..<bytes.count {
                // A prefix already in the target syntax comes back as it is, unread.
                for target in Transcoder.Target.allCases where target.transferSyntaxUID != stored {
                    do {
                        // What is accepted (a cut between elements) must itself be readable.
                        let output = try Transcoder.transcode(Array(bytes.prefix(length)), to: target)
                        #expect(throws: Never.self) { try DICOMReader.read(output.bytes) }
                    } catch {
                        refused += 1
                    }
                }
            }
            #expect(refused > bytes.count, "\(name): most truncations are refused")
        }
        // A 65535×65535 image claimed over a few hundred bytes of pixel data.
        var huge = try corpus.bytes("ct_explicit_le")
        let dataset = try DICOMReader.read(huge).dataset
        for tag in [DICOMTag.rows, .columns] {
            let offset = try #require(dataset[tag]?.offset)
            huge[offset + 8] = 0xFF
            huge[offset + 9] = 0xFF
        }
        for target in Transcoder.Target.allCases where target != .explicitLittleEndian {
            #expect { try Transcoder.transcode(huge, to: target) } throws: { ($0 as? TranscodeError)?.kind == .malformed }
        }
    }

    // MARK: - Helpers

    /// The 32-bit value of the file meta group length element, which must come first after `DICM`.
    static func metaGroupLength(_ bytes: [UInt8]) throws -> Int {
        try #require(bytes[132..<140].elementsEqual([0x02, 0x00, 0x00, 0x00, 0x55, 0x4C, 0x04, 0x00]))
        return (0..<4).reduce(0) { $0 | Int(bytes[140 + $1]) << (8 * $1) }
    }

    /// Where the file meta group ends, found by walking its explicit VR little endian elements.
    static func metaEnd(_ bytes: [UInt8]) -> Int {
        var position = 132
        func word(_ at: Int, _ count: Int) -> Int { (0..<count).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        while position + 8 <= bytes.count, word(position, 2) == 0x0002 {
            let vr = VR(bytes: bytes[position + 4], bytes[position + 5])
            position += vr?.hasLongLength == true ? 12 + word(position + 8, 4) : 8 + word(position + 6, 2)
        }
        return position
    }

    /// Every tag, depth first, with its path; group lengths left out. Ascending order is part of the answer.
    static func tags(_ dataset: DataSet, path: String = "") -> [String] {
        dataset.tags.filter { $0.element != 0 }.flatMap { tag -> [String] in
            let here = "\(path)\(tag)"
            return [here] + dataset.sequence(tag).enumerated().flatMap { tags($1, path: "\(here)[\($0)]") }
        }
    }

    /// Checks each output of the manifest against its source with pydicom (syntax, pixel_array, every element
    /// but those that legitimately change) and dcmtk (dcmdump parses it without errors; dcmdjpls decodes JPEG-LS
    /// to the same pixels). Prints `ok NAME` or `FAIL NAME: reasons`, one line each.
    static let oracle = #"""
        import json, subprocess, sys, warnings
        import numpy as np, pydicom

        warnings.simplefilter("ignore")  # pydicom warns of values longer than their VR allows: hand_implicit has one

        manifest, scratch = json.load(open(sys.argv[1])), sys.argv[2]
        # Planar Configuration, Pixel Data and the extended offset table change with the pixel encoding.
        CHANGED = {0x00280006, 0x7FE00001, 0x7FE00002, 0x7FE00010}
        META_CHANGED = {0x00020000, 0x00020010, 0x00020012, 0x00020013}
        WIDTHS = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}

        def pixels(ds):
            arr = ds.pixel_array
            # pydicom sign-extends JPEG-LS samples from the codestream's precision, native ones from Bits Stored.
            if int(ds.get("PixelRepresentation", 0)) == 1:
                shift = arr.dtype.itemsize * 8 - int(ds.BitsStored)
                if shift:
                    arr = (arr << shift) >> shift
            return arr.astype(arr.dtype.newbyteorder("<"), copy=False)

        def same(a, b):
            if a == b:
                return True
            def raw(v):
                if isinstance(v, str):
                    return v.encode("latin-1", "replace")
                return v if isinstance(v, bytes) else None
            ra, rb = raw(a), raw(b)
            return ra is not None and rb is not None and ra.rstrip(b" \0") == rb.rstrip(b" \0")

        def compare(src, out, big, path, problems):
            for elem in src:
                tag = int(elem.tag)
                if tag in CHANGED or tag & 0xFFFF == 0:
                    continue
                where = f"{path}{elem.tag}"
                if elem.tag not in out:
                    problems.append(f"{where} missing")
                    continue
                other = out[elem.tag]
                if elem.VR != other.VR and "UN" not in (elem.VR, other.VR):
                    problems.append(f"{where} VR {elem.VR} became {other.VR}")
                elif elem.VR == "SQ":
                    if len(elem.value) != len(other.value):
                        problems.append(f"{where} has {len(other.value)} items, not {len(elem.value)}")
                    for index, (a, b) in enumerate(zip(elem.value, other.value)):
                        compare(a, b, big, f"{where}[{index}]", problems)
                else:
                    value = elem.value
                    if big and elem.VR in WIDTHS and isinstance(value, bytes):
                        value = np.frombuffer(value, dtype=f">u{WIDTHS[elem.VR]}").astype(f"<u{WIDTHS[elem.VR]}").tobytes()
                    if not same(value, other.value):
                        problems.append(f"{where} {elem.VR} {value!r:.60} became {other.value!r:.60}")
            for elem in out:
                if int(elem.tag) not in CHANGED and elem.tag not in src:
                    problems.append(f"{path}{elem.tag} added")

        for index, entry in enumerate(manifest):
            problems = []
            try:
                src = pydicom.dcmread(entry["source"], force=True)
                out = pydicom.dcmread(entry["output"])
                big = src.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRBigEndian
                if out.file_meta.TransferSyntaxUID != entry["target"]:
                    problems.append(f"transfer syntax {out.file_meta.TransferSyntaxUID}")
                for elem in src.file_meta:
                    if int(elem.tag) in META_CHANGED:
                        continue
                    if elem.tag not in out.file_meta or not same(elem.value, out.file_meta[elem.tag].value):
                        problems.append(f"meta {elem.tag} changed")
                compare(src, out, big, "", problems)
                if "PixelData" in src:
                    expected = pixels(src)
                    got = pixels(out)
                    if got.dtype != expected.dtype or not np.array_equal(got, expected):
                        problems.append(f"pixel_array differs ({got.dtype} {got.shape} vs {expected.dtype} {expected.shape})")
                    if entry["target"] == "1.2.840.10008.1.2.4.80":
                        decoded = f"{scratch}/dcmdjpls-{index}.dcm"
                        run = subprocess.run(["dcmdjpls", entry["output"], decoded], capture_output=True, text=True)
                        if run.returncode != 0:
                            problems.append(f"dcmdjpls failed: {run.stderr.strip()[:200]}")
                        elif not np.array_equal(pixels(pydicom.dcmread(decoded)), expected):
                            problems.append("dcmdjpls decodes other pixels")
            except Exception as error:
                problems.append(f"{type(error).__name__}: {error}")
            dump = subprocess.run(["dcmdump", entry["output"]], capture_output=True, text=True, errors="replace")
            errors = [line for line in (dump.stdout + dump.stderr).splitlines() if line.startswith("E:")]
            if dump.returncode != 0 or errors:
                problems.append(f"dcmdump exit {dump.returncode}: {errors[:2]}")
            print(f"ok {entry['name']}" if not problems else f"FAIL {entry['name']}: {'; '.join(problems)}")
        """#
}

/// Data sets written byte by byte, for what the corpus does not hold: every binary VR in big endian, odd
/// lengths, sequences of defined length, implicit VR values too long for their VR, private sequences.
enum HandMade {
    enum Value: Sendable {
        case text(String)
        case u16([UInt16])
        case u32([UInt32])
        case u64([UInt64])
        case raw([UInt8])
        /// Items, and whether the sequence and its items have defined lengths.
        case sequence([[Element]], defined: Bool)
    }

    struct Element: Sendable {
        let tag: DICOMTag
        let vr: VR
        let value: Value

        init(_ group: UInt16, _ element: UInt16, _ vr: VR, _ value: Value) {
            tag = DICOMTag(group, element)
            self.vr = vr
            self.value = value
        }

        /// The byte an odd value is padded with.
        var padding: UInt8 { vr.isText && vr != .UI ? 0x20 : 0x00 }
    }

    static let bigEndian: [Element] = [
        Element(0x0008, 0x0016, .UI, .text("1.2.840.10008.5.1.4.1.1.7")),
        Element(0x0008, 0x0018, .UI, .text("2.25.77")),
        Element(0x0008, 0x0060, .CS, .text("OT")),
        Element(0x0008, 0x040C, .UV, .u64([1 << 40 + 5])),
        Element(0x0008, 0x1140, .SQ, .sequence([[Element(0x0008, 0x1155, .UI, .text("1.2.3.4"))]], defined: true)),
        Element(0x0008, 0x1163, .FD, .u64([(0.5 as Double).bitPattern, (-1.25 as Double).bitPattern])),
        Element(0x0009, 0x0010, .LO, .text("ATRIUM TEST")),
        Element(0x0009, 0x1001, .US, .u16([1, 2, 0xABCD])),
        Element(0x0009, 0x1002, .UN, .raw([1, 2, 3, 4])),
        Element(0x0010, 0x0010, .PN, .text("Doe^J")),
        Element(0x0018, 0x1310, .US, .u16([0, 256, 256, 0])),
        Element(0x0018, 0x1320, .FL, .u32([(1.5 as Float).bitPattern])),
        Element(0x0018, 0x1638, .OF, .u32([(1.0 as Float).bitPattern, (-2.5 as Float).bitPattern])),
        Element(0x0018, 0x6020, .SL, .u32([UInt32(bitPattern: -7), 70000])),
        Element(0x0018, 0x9219, .SS, .u16([UInt16(bitPattern: -45)])),
        Element(0x0020, 0x0013, .IS, .text("7 ")),
        Element(0x0028, 0x0009, .AT, .u16([0x0018, 0x1063, 0x0018, 0x1065])),
        Element(0x0028, 0x1201, .OW, .u16([1, 2, 0x1234])),
        Element(0x0040, 0x0275, .SQ, .sequence([[Element(0x0028, 0x0010, .US, .u16([0x0102])), Element(0x0040, 0x1001, .SH, .text("X"))]], defined: false)),
        Element(0x0066, 0x0022, .OD, .u64([(3.25 as Double).bitPattern])),
        Element(0x0066, 0x0040, .OL, .u32([7, 0x0102_0304])),
        Element(0x0072, 0x0081, .OV, .u64([0x0102_0304_0506_0708])),
        Element(0x0072, 0x0082, .SV, .u64([UInt64(bitPattern: -3)])),
    ]

    static let implicit: [Element] = [
        Element(0x0008, 0x0016, .UI, .text("1.2.840.10008.5.1.4.1.1.7")),
        Element(0x0008, 0x0018, .UI, .text("2.25.78")),
        Element(0x0008, 0x1140, .SQ, .sequence([[Element(0x0008, 0x1155, .UI, .text("1.2.3.4"))]], defined: false)),
        Element(0x0009, 0x0010, .LO, .text("ATRIUM TEST")),
        Element(0x0009, 0x1003, .UN, .raw([1, 2, 3])),
        Element(0x0009, 0x1004, .UN, .sequence([[Element(0x0009, 0x1010, .UN, .text("inside"))]], defined: false)),
        Element(0x0010, 0x0010, .PN, .text("Roe^Jane")),
        Element(0x0010, 0x4000, .LT, .text(String(repeating: "x", count: 70_001))),
        Element(0x0028, 0x0103, .US, .u16([1])),
        Element(0x0028, 0x0106, .US, .u16([UInt16(bitPattern: -5)])),
    ]

    /// Preamble, `DICM`, a meta group naming `syntax`, and `elements` encoded in it.
    static func partTen(_ elements: [Element], syntax: String) -> [UInt8] {
        let explicit = syntax != TransferSyntax.implicitLittleEndian.uid
        let bigEndian = syntax == TransferSyntax.explicitBigEndian.uid
        return [UInt8](repeating: 0, count: 128) + Array("DICM".utf8) + meta(syntax: syntax)
            + elements.flatMap { encode($0, bigEndian: bigEndian, explicit: explicit) }
    }

    /// A meta group of one element, the transfer syntax UID (readers need no more).
    static func meta(syntax: String) -> [UInt8] {
        encode(Element(0x0002, 0x0010, .UI, .text(syntax)), bigEndian: false, explicit: true)
    }

    static func encodeValue(_ value: Value, bigEndian: Bool) -> [UInt8] {
        func bytes<T: FixedWidthInteger>(_ numbers: [T]) -> [UInt8] {
            numbers.flatMap { number in withUnsafeBytes(of: bigEndian ? number.bigEndian : number.littleEndian, Array.init) }
        }
        switch value {
        case .text(let text): return Array(text.utf8)
        case .u16(let numbers): return bytes(numbers)
        case .u32(let numbers): return bytes(numbers)
        case .u64(let numbers): return bytes(numbers)
        case .raw(let raw): return raw
        case .sequence: return []
        }
    }

    /// One element as stored: odd values left odd (the reader takes them; the transcoder must pad them).
    static func encode(_ element: Element, bigEndian: Bool, explicit: Bool) -> [UInt8] {
        func u16(_ value: UInt16) -> [UInt8] { withUnsafeBytes(of: bigEndian ? value.bigEndian : value.littleEndian, Array.init) }
        func u32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: bigEndian ? value.bigEndian : value.littleEndian, Array.init) }
        let undefined: UInt32 = 0xFFFF_FFFF
        var value: [UInt8]
        var length: UInt32
        if case .sequence(let items, let defined) = element.value {
            value = []
            for item in items {
                let body = item.flatMap { encode($0, bigEndian: bigEndian, explicit: explicit) }
                value += u16(0xFFFE) + u16(0xE000) + u32(defined ? UInt32(body.count) : undefined) + body
                if !defined { value += u16(0xFFFE) + u16(0xE00D) + u32(0) }
            }
            length = defined ? UInt32(value.count) : undefined
            if !defined { value += u16(0xFFFE) + u16(0xE0DD) + u32(0) }
        } else {
            value = encodeValue(element.value, bigEndian: bigEndian)
            length = UInt32(value.count)
        }
        var out = u16(element.tag.group) + u16(element.tag.element)
        if !explicit { return out + u32(length) + value }
        out += Array(element.vr.rawValue.utf8)
        out += element.vr.hasLongLength ? [0, 0] + u32(length) : u16(UInt16(length))
        return out + value
    }
}
