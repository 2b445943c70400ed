/// Why a DICOM object could not be transcoded.
public struct TranscodeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Whether the object is at fault, or only this transcoder's reach.
    public enum Kind: Sendable, Equatable {
        /// A readable object that cannot be written in the target: pixels not decoded here (e.g. lossy JPEG), or
        /// samples JPEG-LS cannot code (Bits Allocated other than 8 or 16). Another target, or the stored bytes,
        /// may still serve.
        case unsupported
        /// Bytes that are not a readable DICOM object, or pixel data that does not decode.
        case malformed
    }

    /// Whether the object is at fault.
    public let kind: Kind
    /// What went wrong, for logs and for the caller's error message.
    public let reason: String

    /// The kind and the reason, e.g. `unsupported: pixels in JPEG Baseline (…) are stored and delivered but not decoded here`.
    public var description: String { "\(kind == .unsupported ? "unsupported" : "malformed"): \(reason)" }

    static func unsupported(_ reason: String) -> Self { Self(kind: .unsupported, reason: reason) }
    static func malformed(_ reason: String) -> Self { Self(kind: .malformed, reason: reason) }

    init(kind: Kind, reason: String) {
        self.kind = kind
        self.reason = reason
    }

    init(_ error: PixelError) {
        self.init(kind: error.unsupported ? .unsupported : .malformed, reason: error.description)
    }
}

/// Re-encodes DICOM Part 10 objects losslessly for delivery: whatever the stored syntax (implicit or explicit VR
/// little endian, explicit VR big endian, deflated, RLE, JPEG-LS), the output is a Part 10 file in the target
/// syntax whose pixels decode (``PixelDecoder/decode(_:)``) to exactly the stored object's decoded pixels.
///
/// The file meta keeps the source's elements but names the target syntax and Atrium's implementation. The data
/// set is explicit VR little endian in ascending tag order, every element kept: binary values of big endian
/// sources are swapped by their VR, values too long for their VR's 2-byte length become `UN`, sequences are
/// written with undefined lengths and delimiters, group lengths (retired in data sets) are left out. Pixel
/// Data is written native (OB up to 8 bits allocated, else OW) or as one JPEG-LS codestream per frame after a
/// basic offset table; colour is interleaved either way, so Planar Configuration becomes 0. Pixel Data nested
/// in a sequence (an icon) is always written native.
public enum Transcoder {
    /// A syntax the transcoder writes.
    public enum Target: Sendable, Hashable, CaseIterable {
        /// Explicit VR little endian (1.2.840.10008.1.2.1), native pixels.
        case explicitLittleEndian
        /// Deflated explicit VR little endian (1.2.840.10008.1.2.1.99): the data set as one raw deflate stream.
        case deflatedExplicitLittleEndian
        /// JPEG-LS lossless (1.2.840.10008.1.2.4.80); Bits Allocated must be 8 or 16.
        case jpegLSLossless

        /// The transfer syntax UID the output names.
        public var transferSyntaxUID: String {
            switch self {
            case .explicitLittleEndian: TransferSyntax.explicitLittleEndian.uid
            case .deflatedExplicitLittleEndian: TransferSyntax.deflatedExplicitLittleEndian.uid
            case .jpegLSLossless: TransferSyntax.jpegLSLossless
            }
        }
    }

    /// The implementation class UID written by default: the registry's under its default UID root (`2.25`).
    public static let implementationClassUID = "2.25.83154958613580209785183808806154812001"

    /// zlib's level for the deflated target: the fastest. On a 512×512 CT slice, level 6 (zlib's default) takes
    /// about 5 times as long (~60 ms against ~11) for an output 2.5% smaller.
    static let deflateLevel: Int32 = 1

    /// `partTen` re-encoded in `target`, and the target's transfer syntax UID. An object already in the target
    /// syntax (as its file meta says) is returned unchanged, without being parsed further.
    public static func transcode(
        _ partTen: [UInt8],
        to target: Target,
        implementationClassUID: String = Transcoder.implementationClassUID,
        implementationVersion: String = DICOMWriter.implementationVersion
    ) throws(TranscodeError) -> (bytes: [UInt8], transferSyntaxUID: String) {
        let uid = target.transferSyntaxUID
        if let stored = try? DICOMReader.transferSyntax(ofPartTen: partTen), stored.uid == uid { return (partTen, uid) }
        let file: DICOMFile
        do {
            file = try DICOMReader.read(partTen)
        } catch {
            throw .malformed("not a readable DICOM object: \(error)")
        }
        let pixels = try file.dataset[.pixelData].map { _ throws(TranscodeError) in
            try EncodedPixels(file.dataset, syntax: file.transferSyntax, jpegLS: target == .jpegLSLossless)
        }
        let meta = try Self.meta(file, transferSyntaxUID: uid, implementationClassUID: implementationClassUID, implementationVersion: implementationVersion)

        var encoder = Encoder(syntax: file.transferSyntax)
        encoder.out.reserveCapacity(132 + 12 + meta.count + partTen.count + (pixels?.byteCount ?? 0) + 4096)
        encoder.out.append(contentsOf: repeatElement(0, count: 128))
        encoder.out.append(contentsOf: "DICM".utf8)
        encoder.header(.fileMetaInformationGroupLength, .UL, length: 4)
        encoder.append32(UInt32(meta.count))
        encoder.out.append(contentsOf: meta)
        guard target == .deflatedExplicitLittleEndian else {
            try encoder.dataSet(file.dataset, depth: 0, signed: false, pixels: pixels)
            return (encoder.out, uid)
        }
        var body = Encoder(syntax: file.transferSyntax)
        body.out.reserveCapacity(partTen.count + (pixels?.byteCount ?? 0) + 4096)
        try body.dataSet(file.dataset, depth: 0, signed: false, pixels: pixels)
        let deflated: [UInt8]
        do {
            deflated = try Deflate.raw(body.out, level: deflateLevel)
        } catch {
            throw .unsupported("the data set could not be deflated: \(error)")
        }
        encoder.out.append(contentsOf: deflated)
        // The stream is padded to an even length, as pydicom pads it; inflating stops at its end.
        if deflated.count % 2 == 1 { encoder.out.append(0) }
        return (encoder.out, uid)
    }

    /// The file meta group after its group length: the source's elements (and any group 0002 elements found
    /// in the data set of a file without meta) with the target syntax and this implementation.
    private static func meta(
        _ file: DICOMFile, transferSyntaxUID: String, implementationClassUID: String, implementationVersion: String
    ) throws(TranscodeError) -> [UInt8] {
        let replaced: Set<DICOMTag> = [.fileMetaInformationGroupLength, .transferSyntaxUID, implementationClassUIDTag, implementationVersionTag]
        var meta = DataSet(littleEndian: true)
        for tag in file.meta.tags where !replaced.contains(tag) {
            if let element = file.meta[tag] { meta.append(element) }
        }
        for tag in file.dataset.tags where tag.group == 0x0002 && !replaced.contains(tag) && meta[tag] == nil {
            if let element = file.dataset[tag] { meta.append(element) }
        }
        func add(_ tag: DICOMTag, _ vr: VR, _ bytes: [UInt8]) {
            meta.append(DataElement(tag: tag, vr: vr, value: .bytes(bytes[...]), offset: 0))
        }
        if meta[fileMetaInformationVersionTag] == nil { add(fileMetaInformationVersionTag, .OB, [0x00, 0x01]) }
        if meta[.mediaStorageSOPClassUID] == nil, let uid = file.dataset.bytes(.sopClassUID) { add(.mediaStorageSOPClassUID, .UI, Array(uid)) }
        if meta[.mediaStorageSOPInstanceUID] == nil, let uid = file.dataset.bytes(.sopInstanceUID) { add(.mediaStorageSOPInstanceUID, .UI, Array(uid)) }
        add(.transferSyntaxUID, .UI, Array(transferSyntaxUID.utf8))
        add(implementationClassUIDTag, .UI, Array(implementationClassUID.utf8))
        add(implementationVersionTag, .SH, Array(implementationVersion.utf8))
        var encoder = Encoder(syntax: .explicitLittleEndian)
        for tag in meta.tags.sorted() {
            if let element = meta[tag] { try encoder.element(element, littleEndian: true, depth: 1, signed: false) }
        }
        return encoder.out
    }

    static let fileMetaInformationVersionTag = DICOMTag(0x0002, 0x0001)
    static let implementationClassUIDTag = DICOMTag(0x0002, 0x0012)
    static let implementationVersionTag = DICOMTag(0x0002, 0x0013)
    /// Extended Offset Table and its lengths: they index the stored fragments, which are not written.
    static let extendedOffsetTableTags: Set<DICOMTag> = [DICOMTag(0x7FE0, 0x0001), DICOMTag(0x7FE0, 0x0002)]

    /// The "US or SS" attributes that hold pixel values: SS when Pixel Representation is 1 (as pydicom resolves
    /// them). An implicit VR source gets US for them from the dictionary.
    static let pixelValueTags: Set<UInt32> = [
        0x0018_9810, 0x0022_1452, 0x0028_0071, 0x0028_0104, 0x0028_0105, 0x0028_0106, 0x0028_0107, 0x0028_0108,
        0x0028_0109, 0x0028_0110, 0x0028_0111, 0x0028_0120, 0x0028_0121, 0x0040_9211, 0x0040_9216, 0x0060_3004,
        0x0060_3006,
    ]
}

/// Pixel Data as it will be written.
struct EncodedPixels {
    enum Value {
        /// Little-endian samples, interleaved, and OB or OW.
        case native([UInt8], VR)
        /// One JPEG-LS codestream per frame (each of even length).
        case encapsulated([[UInt8]])
    }

    let value: Value

    /// The bytes written for the value, about.
    var byteCount: Int {
        switch value {
        case .native(let bytes, _): bytes.count + 1
        case .encapsulated(let codestreams): codestreams.reduce(16 + 12 * codestreams.count) { $0 + $1.count }
        }
    }

    /// The pixels of `dataset` (which holds Pixel Data) decoded and, when `jpegLS`, coded again.
    init(_ dataset: DataSet, syntax: TransferSyntax, jpegLS: Bool) throws(TranscodeError) {
        if jpegLS {
            // Refused before anything is decoded.
            let allocated: Int
            do {
                allocated = try PixelLayout(dataset).bitsAllocated
            } catch {
                throw TranscodeError(error)
            }
            guard allocated == 8 || allocated == 16 else {
                throw .unsupported("JPEG-LS codes 8 or 16 bits allocated a sample; this image has \(allocated)")
            }
        }
        let file = DICOMFile(meta: DataSet(littleEndian: true), dataset: dataset, transferSyntax: syntax, hasPreamble: true)
        let layout: PixelLayout
        let samples: [UInt8]
        do {
            (layout, samples) = try PixelDecoder.decode(file)
        } catch {
            throw TranscodeError(error)
        }
        guard jpegLS else {
            value = .native(samples, layout.bitsAllocated > 8 ? .OW : .OB)
            return
        }
        // JPEG-LS codes Bits Stored bits of each sample. Signed samples are sign-extended from there, so nothing
        // above is lost; unsigned samples with bits set above Bits Stored are coded at Bits Allocated instead.
        var coding = layout
        if !layout.signed && layout.bitsStored < layout.bitsAllocated && Self.exceedsBitsStored(samples, layout: layout) {
            coding.bitsStored = layout.bitsAllocated
        }
        var codestreams: [[UInt8]] = []
        codestreams.reserveCapacity(layout.frames)
        for frame in 0..<layout.frames {
            let start = frame * layout.bytesPerFrame
            do {
                codestreams.append(try JPEGLS.encode(samples[start..<start + layout.bytesPerFrame], layout: coding))
            } catch {
                throw TranscodeError(error)
            }
        }
        value = .encapsulated(codestreams)
    }

    /// Whether any little-endian sample has a bit set above Bits Stored.
    private static func exceedsBitsStored(_ samples: [UInt8], layout: PixelLayout) -> Bool {
        samples.withUnsafeBytes { bytes in
            if layout.bytesPerSample == 1 {
                let high = UInt8(truncatingIfNeeded: 0xFF << layout.bitsStored)
                return bytes.contains { $0 & high != 0 }
            }
            let high = UInt16(truncatingIfNeeded: 0xFFFF << layout.bitsStored)
            var any: UInt16 = 0
            for index in 0..<bytes.count / 2 {
                any |= UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self))
            }
            return any & high != 0
        }
    }
}

/// Writes elements as explicit VR little endian into one growing buffer.
struct Encoder {
    var out: [UInt8] = []
    /// The source's syntax: how nested Pixel Data is decoded, and whether VRs came from the dictionary.
    let syntax: TransferSyntax

    init(syntax: TransferSyntax) {
        self.syntax = syntax
    }

    /// The elements of `dataset` in ascending tag order. `signed` is the Pixel Representation in force from an
    /// enclosing data set; `pixels`, when given, is written for Pixel Data (else it is decoded here, native).
    mutating func dataSet(_ dataset: DataSet, depth: Int, signed inherited: Bool, pixels given: EncodedPixels?) throws(TranscodeError) {
        var pixels = given
        if pixels == nil && dataset[.pixelData] != nil { pixels = try EncodedPixels(dataset, syntax: syntax, jpegLS: false) }
        let signed = dataset.integer(.pixelRepresentation).map { $0 == 1 } ?? inherited
        // Decoded pixels are interleaved: colour says Planar Configuration 0, added if it was missing.
        let interleaved = pixels != nil && (dataset.integer(.samplesPerPixel) ?? 1) > 1
        var tags = dataset.tags.sorted()
        if interleaved && dataset[.planarConfiguration] == nil {
            tags.insert(.planarConfiguration, at: tags.firstIndex { $0 > .planarConfiguration } ?? tags.endIndex)
        }
        for tag in tags {
            // Group lengths would be wrong after re-encoding; group 0002 belongs in the file meta.
            if tag.element == 0x0000 || (depth == 0 && tag.group == 0x0002) { continue }
            if interleaved && tag == .planarConfiguration {
                header(tag, .US, length: 2)
                append16(0)
            } else if let pixels, tag == .pixelData {
                write(pixels)
            } else if pixels != nil && Transcoder.extendedOffsetTableTags.contains(tag) {
                continue
            } else if let found = dataset[tag] {
                try element(found, littleEndian: dataset.littleEndian, depth: depth, signed: signed)
            }
        }
    }

    /// One element (other than re-encoded Pixel Data), its value converted from the source's byte order.
    mutating func element(_ element: DataElement, littleEndian: Bool, depth: Int, signed: Bool) throws(TranscodeError) {
        switch element.value {
        case .bytes(let value):
            var vr = element.vr
            if signed && vr == .US && !syntax.explicitVR && Transcoder.pixelValueTags.contains(element.tag.value) { vr = .SS }
            let padded = value.count + value.count % 2
            // The reader's lengths fit 32 bits, but an odd 0xFFFFFFFF-byte value cannot be padded.
            guard padded <= 0xFFFF_FFFE else { throw .unsupported("a value of \(value.count) bytes for \(element.tag) cannot be padded to an even length") }
            // A value read with a 4-byte length (implicit VR) may be too long for its VR's 2-byte one.
            header(element.tag, vr.hasLongLength || padded <= 0xFFFE ? vr : .UN, length: UInt32(padded))
            let start = out.count
            out.append(contentsOf: value)
            if !littleEndian, let width = vr.numberWidth { PixelDecoder.swapBytes(&out, width: width, in: start..<start + value.count) }
            if padded != value.count { out.append(vr.isText && vr != .UI ? 0x20 : 0x00) }
        case .sequence(let items):
            header(element.tag, .SQ, length: 0xFFFF_FFFF)
            for item in items {
                delimiter(.item, length: 0xFFFF_FFFF)
                try dataSet(item, depth: depth + 1, signed: signed, pixels: nil)
                delimiter(.itemDelimitation, length: 0)
            }
            delimiter(.sequenceDelimitation, length: 0)
        case .fragments:
            throw .malformed("\(element.tag) holds encapsulated fragments, which only Pixel Data may")
        }
    }

    /// Pixel Data: native, or encapsulated (basic offset table, a fragment per frame, sequence delimiter).
    mutating func write(_ pixels: EncodedPixels) {
        switch pixels.value {
        case .native(let bytes, let vr):
            header(.pixelData, vr, length: UInt32(bytes.count + bytes.count % 2))
            out.append(contentsOf: bytes)
            if bytes.count % 2 == 1 { out.append(0) }
        case .encapsulated(let codestreams):
            header(.pixelData, .OB, length: 0xFFFF_FFFF)
            // Each offset is from the first fragment's item tag to the frame's; left empty past 4 GiB.
            let ends = codestreams.reduce(into: [0]) { $0.append($0[$0.count - 1] + 8 + $1.count + $1.count % 2) }
            let table = (ends.last ?? 0) <= Int(UInt32.max) ? ends.dropLast() : []
            delimiter(.item, length: UInt32(4 * table.count))
            for offset in table { append32(UInt32(offset)) }
            for codestream in codestreams {
                delimiter(.item, length: UInt32(codestream.count + codestream.count % 2))
                out.append(contentsOf: codestream)
                if codestream.count % 2 == 1 { out.append(0) }
            }
            delimiter(.sequenceDelimitation, length: 0)
        }
    }

    /// Tag, VR and length; `UN`, `SQ`, the `O` VRs and a few more take 2 reserved bytes and a 4-byte length.
    mutating func header(_ tag: DICOMTag, _ vr: VR, length: UInt32) {
        append16(tag.group)
        append16(tag.element)
        out.append(contentsOf: vr.rawValue.utf8)
        if vr.hasLongLength {
            append16(0)
            append32(length)
        } else {
            append16(UInt16(truncatingIfNeeded: length))
        }
    }

    /// An item, item delimiter or sequence delimiter: tag and 4-byte length, no VR.
    private mutating func delimiter(_ tag: DICOMTag, length: UInt32) {
        append16(tag.group)
        append16(tag.element)
        append32(length)
    }

    mutating func append16(_ value: UInt16) {
        out.append(UInt8(truncatingIfNeeded: value))
        out.append(UInt8(truncatingIfNeeded: value >> 8))
    }

    mutating func append32(_ value: UInt32) {
        append16(UInt16(truncatingIfNeeded: value))
        append16(UInt16(truncatingIfNeeded: value >> 16))
    }
}
