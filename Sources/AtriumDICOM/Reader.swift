/// Why bytes are not a DICOM object we can read, and where.
public struct DICOMError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset in the input (for a deflated data set: in the inflated bytes, after the file meta).
    public let offset: Int
    /// What is wrong with the bytes, in words.
    public let reason: String

    /// An error at byte `offset` of the input, for `reason`.
    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    /// The offset and the reason: `at byte <offset>: <reason>`.
    public var description: String { "at byte \(offset): \(reason)" }
}

/// A parsed DICOM object.
public struct DICOMFile: Sendable {
    /// The file meta group (0002); empty for a bare data set.
    public var meta: DataSet
    /// The data set after the file meta (inflated first for a deflated transfer syntax).
    public var dataset: DataSet
    /// The transfer syntax of ``dataset``, from (0002,0010); implicit VR little endian for a bare data set.
    public var transferSyntax: TransferSyntax
    /// Whether the input had the 128-byte preamble and `DICM`.
    public var hasPreamble: Bool
}

/// Reads DICOM Part 10 files (and bare implicit VR little endian data sets) without trusting any length in
/// them: every length is checked against the bytes that remain, nesting is limited, and a problem is
/// reported with its byte offset. No input makes it trap or loop.
public enum DICOMReader {
    /// How deep sequences may nest.
    public static let maximumDepth = 32

    /// Parses a whole object: a Part 10 file (with or without the 128-byte preamble), or a bare implicit VR
    /// little endian data set. A deflated data set is inflated first.
    public static func read(_ input: [UInt8]) throws(DICOMError) -> DICOMFile {
        if input.count >= 132, input[128..<132].elementsEqual("DICM".utf8) {
            return try readPartTen(input, metaStart: 132, hasPreamble: true)
        }
        if input.count >= 4, input[0..<4].elementsEqual("DICM".utf8) {
            return try readPartTen(input, metaStart: 4, hasPreamble: false)
        }
        // A bare data set: accepted only when it reads, start to end, as implicit VR little endian in
        // ascending tag order, starting at a standard group.
        var parser = Parser(bytes: input, syntax: .implicitLittleEndian)
        let dataset: DataSet
        do {
            dataset = try parser.dataSet(end: input.count, depth: 0, requireAscending: true)
        } catch {
            throw DICOMError(offset: error.offset, reason: "not DICOM: no 'DICM' marker at byte 128, and not a bare implicit VR little endian data set (\(error.reason))")
        }
        guard let first = dataset.tags.first, first.group >= 0x0002, first.group <= 0x0010 || first.group == 0x0020 || first.group == 0x0028 else {
            throw DICOMError(offset: 0, reason: "not DICOM: no 'DICM' marker at byte 128, and the data does not start like a data set")
        }
        return DICOMFile(meta: DataSet(littleEndian: true), dataset: dataset, transferSyntax: .implicitLittleEndian, hasPreamble: false)
    }

    /// The transfer syntax a Part 10 file's meta group names (only the preamble and the meta are read).
    public static func transferSyntax(ofPartTen prefix: [UInt8]) throws(DICOMError) -> TransferSyntax {
        guard prefix.count >= 132, prefix[128..<132].elementsEqual("DICM".utf8) else {
            throw DICOMError(offset: 0, reason: "not DICOM Part 10: no 'DICM' marker at byte 128")
        }
        var parser = Parser(bytes: prefix, syntax: .explicitLittleEndian)
        parser.position = 132
        guard let uid = try parser.metaGroup().string(.transferSyntaxUID) else {
            throw DICOMError(offset: 132, reason: "the file meta has no transfer syntax UID (0002,0010)")
        }
        return TransferSyntax(uid: uid)
    }

    /// Reads the first `prefix.count` bytes of a Part 10 object of `totalLength` bytes, for objects too large
    /// to hold in memory: parsing stops at the first top-level element whose value runs past the prefix (most
    /// often the pixel data), which is described in ``DICOMHeader/elided`` instead of being read. Elements
    /// after it are not read. A deflated object must be read whole (``read(_:)``).
    public static func readHeader(_ prefix: [UInt8], totalLength: Int) throws(DICOMError) -> DICOMHeader {
        guard prefix.count >= 132, prefix[128..<132].elementsEqual("DICM".utf8) else {
            throw DICOMError(offset: 0, reason: "not DICOM Part 10: no 'DICM' marker at byte 128")
        }
        var parser = Parser(bytes: prefix, syntax: .explicitLittleEndian)
        parser.position = 132
        let meta = try parser.metaGroup()
        guard let uid = meta.string(.transferSyntaxUID) else {
            throw DICOMError(offset: 132, reason: "the file meta has no transfer syntax UID (0002,0010)")
        }
        let syntax = TransferSyntax(uid: uid)
        guard !syntax.deflated else { throw DICOMError(offset: parser.position, reason: "a deflated object must be read whole") }
        var body = Parser(bytes: prefix, syntax: syntax)
        body.position = parser.position
        body.totalLength = max(totalLength, prefix.count)
        let dataset = try body.dataSet(end: prefix.count, depth: 0)
        return DICOMHeader(file: DICOMFile(meta: meta, dataset: dataset, transferSyntax: syntax, hasPreamble: true), elided: body.elided)
    }

    private static func readPartTen(_ input: [UInt8], metaStart: Int, hasPreamble: Bool) throws(DICOMError) -> DICOMFile {
        var parser = Parser(bytes: input, syntax: .explicitLittleEndian)
        parser.position = metaStart
        let meta = try parser.metaGroup()
        guard let uid = meta.string(.transferSyntaxUID) else {
            throw DICOMError(offset: metaStart, reason: "the file meta has no transfer syntax UID (0002,0010)")
        }
        let syntax = TransferSyntax(uid: uid)
        if syntax.deflated {
            let inflated: [UInt8]
            do {
                inflated = try Inflate.raw(input[parser.position...])
            } catch {
                throw DICOMError(offset: parser.position, reason: "the deflated data set does not inflate: \(error)")
            }
            var inner = Parser(bytes: inflated, syntax: syntax)
            let dataset = try inner.dataSet(end: inflated.count, depth: 0)
            return DICOMFile(meta: meta, dataset: dataset, transferSyntax: syntax, hasPreamble: hasPreamble)
        }
        var body = Parser(bytes: input, syntax: syntax)
        body.position = parser.position
        let dataset = try body.dataSet(end: input.count, depth: 0)
        return DICOMFile(meta: meta, dataset: dataset, transferSyntax: syntax, hasPreamble: hasPreamble)
    }
}

/// The start of a large object, read by ``DICOMReader/readHeader(_:totalLength:)``.
public struct DICOMHeader: Sendable {
    /// A top-level element whose value was not read because it runs past the bytes given.
    public struct Elided: Sendable, Equatable {
        /// The element's tag, most often Pixel Data (7FE0,0010).
        public var tag: DICOMTag
        /// The element's VR (`OB` for encapsulated pixel data stored as `UN`).
        public var vr: VR
        /// Where its value starts in the whole object.
        public var valueOffset: Int
        /// Its value length; `nil` for encapsulated pixel data (undefined length).
        public var length: Int?
    }

    /// The meta and every top-level element before the elided one.
    public var file: DICOMFile
    /// The element where parsing stopped; `nil` when every top-level element lies within the prefix.
    public var elided: Elided?

    /// The header with `frame` as its pixel data and one frame: what a thumbnail needs of a native object
    /// whose pixel data was elided.
    public func withFirstFrame(_ frame: [UInt8]) -> DICOMFile {
        var file = self.file
        let vr = elided?.vr ?? .OW
        file.dataset.append(DataElement(tag: .pixelData, vr: vr, value: .bytes(frame[...]), offset: elided?.valueOffset ?? 0))
        if file.dataset[.numberOfFrames] != nil {
            file.dataset.append(DataElement(tag: .numberOfFrames, vr: .IS, value: .bytes(Array("1 ".utf8)[...]), offset: 0))
        }
        return file
    }
}

/// The cursor over one byte array in one transfer syntax.
struct Parser {
    let bytes: [UInt8]
    let explicitVR: Bool
    let littleEndian: Bool
    var position = 0
    /// When `bytes` is the prefix of a longer object: its whole length. A top-level value that runs past the
    /// prefix but not past this is elided, and parsing stops there.
    var totalLength: Int?
    private(set) var elided: DICOMHeader.Elided?

    init(bytes: [UInt8], syntax: TransferSyntax) {
        self.bytes = bytes
        self.explicitVR = syntax.explicitVR
        self.littleEndian = syntax.littleEndian
    }

    private func fail(_ reason: String, at offset: Int? = nil) -> DICOMError {
        DICOMError(offset: offset ?? position, reason: reason)
    }

    private mutating func need(_ count: Int, _ what: String) throws(DICOMError) {
        guard count <= bytes.count - position else {
            throw fail("truncated: \(what) needs \(count) bytes, \(bytes.count - position) left")
        }
    }

    private mutating func u16() -> UInt16 {
        let a = UInt16(bytes[position]), b = UInt16(bytes[position + 1])
        position += 2
        return littleEndian ? a | b << 8 : a << 8 | b
    }

    private mutating func u32() -> UInt32 {
        let a = UInt32(u16()), b = UInt32(u16())
        return littleEndian ? a | b << 16 : a << 16 | b
    }

    private mutating func tag() throws(DICOMError) -> DICOMTag {
        try need(4, "a tag")
        return DICOMTag(u16(), u16())
    }

    /// The file meta group: explicit VR little endian elements of group 0002.
    mutating func metaGroup() throws(DICOMError) -> DataSet {
        var meta = DataSet(littleEndian: true)
        while bytes.count - position >= 2 {
            let group = UInt16(bytes[position]) | UInt16(bytes[position + 1]) << 8
            guard group == 0x0002 else { break }
            guard let element = try element(end: bytes.count, depth: 0, characterSet: .default) else {
                throw fail("an item delimiter inside the file meta")
            }
            meta.append(element)
        }
        guard !meta.tags.isEmpty else { throw fail("no file meta group after 'DICM'") }
        return meta
    }

    /// Elements up to `end` (a definite length) or, when `end` is nil, up to an item delimiter.
    mutating func dataSet(
        end: Int?,
        depth: Int,
        characterSet: DICOMCharacterSet = .default,
        requireAscending: Bool = false
    ) throws(DICOMError) -> DataSet {
        var dataset = DataSet(littleEndian: littleEndian, characterSet: characterSet)
        while true {
            if let end {
                if position == end { return dataset }
                guard position < end else { throw fail("an element runs past the end of its item") }
            } else if position == bytes.count {
                throw fail("truncated: an item of undefined length has no item delimiter")
            }
            let start = position
            guard let element = try element(end: end ?? bytes.count, depth: depth, characterSet: dataset.characterSet) else {
                if elided != nil { return dataset }
                guard end == nil else { throw fail("an item delimiter in an item of defined length", at: start) }
                return dataset
            }
            if requireAscending, let last = dataset.tags.last, element.tag <= last {
                throw fail("tag \(element.tag) is not after \(last)", at: start)
            }
            dataset.append(element)
            if element.tag == .specificCharacterSet {
                dataset.characterSet = DICOMCharacterSet(terms: dataset.strings(.specificCharacterSet))
            }
        }
    }

    /// One element, or `nil` for an item delimiter (which it consumes).
    private mutating func element(end: Int, depth: Int, characterSet: DICOMCharacterSet) throws(DICOMError) -> DataElement? {
        let start = position
        let tag = try tag()
        switch tag {
        case .itemDelimitation:
            try need(4, "an item delimiter's length")
            _ = u32()
            return nil
        case .item:
            throw fail("an item outside a sequence", at: start)
        case .sequenceDelimitation:
            throw fail("a sequence delimiter outside a sequence", at: start)
        default:
            break
        }
        var vr: VR
        let length: UInt32
        if explicitVR {
            try need(2, "a VR")
            guard let parsed = VR(bytes: bytes[position], bytes[position + 1]) else {
                throw fail("tag \(tag) has no valid VR (bytes \(bytes[position]), \(bytes[position + 1]))")
            }
            vr = parsed
            position += 2
            if vr.hasLongLength {
                try need(6, "a long value length")
                position += 2
                length = u32()
            } else {
                try need(2, "a value length")
                length = UInt32(u16())
            }
        } else {
            vr = DataDictionary.vr(for: tag) ?? .UN
            try need(4, "a value length")
            length = u32()
        }
        if length == 0xFFFF_FFFF {
            if tag == .pixelData && (vr == .OB || vr == .OW || vr == .UN) && depth == 0 && totalLength != nil {
                elided = DICOMHeader.Elided(tag: tag, vr: vr == .UN ? .OB : vr, valueOffset: position, length: nil)
                return nil
            }
            if tag == .pixelData && (vr == .OB || vr == .OW || vr == .UN) {
                return DataElement(tag: tag, vr: vr == .UN ? .OB : vr, value: try fragments(end: end), offset: start)
            }
            guard vr == .SQ || vr == .UN else { throw fail("tag \(tag) (\(vr)) has an undefined length, allowed only for sequences and pixel data", at: start) }
            // An undefined-length UN is a sequence encoded in implicit VR little endian (PS3.5 6.2.2).
            var inner = vr == .UN ? Parser(bytes: bytes, syntax: .implicitLittleEndian) : self
            inner.position = position
            let items = try inner.items(end: nil, depth: depth + 1, characterSet: characterSet)
            position = inner.position
            return DataElement(tag: tag, vr: .SQ, value: .sequence(items), offset: start)
        }
        let count = Int(length)
        if depth == 0, let totalLength, count > end - position, count <= totalLength - position {
            elided = DICOMHeader.Elided(tag: tag, vr: vr, valueOffset: position, length: count)
            return nil
        }
        guard count <= end - position else {
            throw fail("tag \(tag) has a value of \(count) bytes but only \(max(0, end - position)) remain", at: start)
        }
        let valueEnd = position + count
        if vr == .UN, let known = DataDictionary.vr(for: tag), known != .UN {
            vr = known
            if known == .SQ {
                var inner = Parser(bytes: bytes, syntax: .implicitLittleEndian)
                inner.position = position
                let items = try inner.items(end: valueEnd, depth: depth + 1, characterSet: characterSet)
                position = valueEnd
                return DataElement(tag: tag, vr: .SQ, value: .sequence(items), offset: start)
            }
        }
        if vr == .SQ {
            let items = try items(end: valueEnd, depth: depth + 1, characterSet: characterSet)
            return DataElement(tag: tag, vr: .SQ, value: .sequence(items), offset: start)
        }
        let value = bytes[position..<valueEnd]
        position = valueEnd
        return DataElement(tag: tag, vr: vr, value: .bytes(value), offset: start)
    }

    /// Sequence items up to `end`, or up to a sequence delimiter when `end` is nil.
    private mutating func items(end: Int?, depth: Int, characterSet: DICOMCharacterSet) throws(DICOMError) -> [DataSet] {
        guard depth <= DICOMReader.maximumDepth else { throw fail("sequences nest deeper than \(DICOMReader.maximumDepth)") }
        var items: [DataSet] = []
        while true {
            if let end {
                if position == end { return items }
                guard position < end else { throw fail("an item runs past the end of its sequence") }
            }
            let start = position
            let tag = try tag()
            try need(4, "an item length")
            let length = u32()
            if tag == .sequenceDelimitation {
                guard end == nil else { throw fail("a sequence delimiter in a sequence of defined length", at: start) }
                return items
            }
            guard tag == .item else { throw fail("expected an item in a sequence, found \(tag)", at: start) }
            if length == 0xFFFF_FFFF {
                items.append(try dataSet(end: nil, depth: depth, characterSet: characterSet))
            } else {
                let limit = end ?? bytes.count
                guard Int(length) <= limit - position else {
                    throw fail("an item of \(length) bytes but only \(max(0, limit - position)) remain", at: start)
                }
                items.append(try dataSet(end: position + Int(length), depth: depth, characterSet: characterSet))
            }
        }
    }

    /// Encapsulated pixel data: items walked by their lengths (never by scanning for delimiters) up to the
    /// sequence delimiter. The first item is the basic offset table.
    private mutating func fragments(end: Int) throws(DICOMError) -> DataElement.Value {
        var items: [ArraySlice<UInt8>] = []
        while true {
            let start = position
            let tag = try tag()
            try need(4, "a fragment length")
            let length = u32()
            if tag == .sequenceDelimitation { break }
            guard tag == .item else { throw fail("expected a pixel data fragment, found \(tag)", at: start) }
            guard length != 0xFFFF_FFFF, Int(length) <= end - position else {
                throw fail("a pixel data fragment of \(length) bytes but only \(max(0, end - position)) remain", at: start)
            }
            items.append(bytes[position..<position + Int(length)])
            position += Int(length)
        }
        guard let table = items.first else { throw fail("encapsulated pixel data without a basic offset table item") }
        return .fragments(offsetTable: table, fragments: Array(items.dropFirst()))
    }
}
