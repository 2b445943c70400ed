/// A transfer syntax: how a data set's bytes are laid out.
public struct TransferSyntax: Hashable, Sendable {
    /// The transfer syntax UID, e.g. `1.2.840.10008.1.2.1`.
    public let uid: String
    /// Whether elements state their VR; `false` for implicit VR, where ``DataDictionary`` gives it.
    public let explicitVR: Bool
    /// Whether binary values are little endian; `false` only for explicit VR big endian.
    public let littleEndian: Bool
    /// The data set after the file meta is a raw deflate stream.
    public let deflated: Bool
    /// Pixel data is encapsulated (compressed fragments).
    public let encapsulated: Bool

    /// Implicit VR Little Endian (1.2.840.10008.1.2), DICOM's default transfer syntax.
    public static let implicitLittleEndian = TransferSyntax(uid: "1.2.840.10008.1.2", explicitVR: false, littleEndian: true, deflated: false, encapsulated: false)
    /// Explicit VR Little Endian (1.2.840.10008.1.2.1).
    public static let explicitLittleEndian = TransferSyntax(uid: "1.2.840.10008.1.2.1", explicitVR: true, littleEndian: true, deflated: false, encapsulated: false)
    /// Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99): the data set is a raw deflate stream.
    public static let deflatedExplicitLittleEndian = TransferSyntax(uid: "1.2.840.10008.1.2.1.99", explicitVR: true, littleEndian: true, deflated: true, encapsulated: false)
    /// Explicit VR Big Endian (1.2.840.10008.1.2.2), retired from the standard but still read.
    public static let explicitBigEndian = TransferSyntax(uid: "1.2.840.10008.1.2.2", explicitVR: true, littleEndian: false, deflated: false, encapsulated: false)
    /// The UID of RLE Lossless (1.2.840.10008.1.2.5), whose pixel data ``PixelDecoder`` decodes.
    public static let rleLossless = "1.2.840.10008.1.2.5"
    /// The UID of JPEG-LS Lossless (1.2.840.10008.1.2.4.80), which ``PixelDecoder`` decodes and ``Transcoder`` writes.
    public static let jpegLSLossless = "1.2.840.10008.1.2.4.80"
    /// The UID of JPEG-LS Near-Lossless (1.2.840.10008.1.2.4.81), which ``PixelDecoder`` decodes (not written).
    public static let jpegLSNearLossless = "1.2.840.10008.1.2.4.81"

    /// The syntax named by `uid`. Every UID outside the four native ones is explicit VR little endian with
    /// encapsulated pixel data (RLE, the JPEG family, MPEG...), as PS3.5 defines them.
    public init(uid: String) {
        switch uid {
        case Self.implicitLittleEndian.uid: self = .implicitLittleEndian
        case Self.explicitLittleEndian.uid: self = .explicitLittleEndian
        case Self.deflatedExplicitLittleEndian.uid: self = .deflatedExplicitLittleEndian
        case Self.explicitBigEndian.uid: self = .explicitBigEndian
        default: self.init(uid: uid, explicitVR: true, littleEndian: true, deflated: false, encapsulated: true)
        }
    }

    /// A readable name and the UID, e.g. `JPEG Baseline (1.2.840.10008.1.2.4.50)`.
    public var displayName: String {
        let names: [String: String] = [
            "1.2.840.10008.1.2": "Implicit VR Little Endian", "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
            "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian", "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
            "1.2.840.10008.1.2.5": "RLE Lossless", "1.2.840.10008.1.2.4.50": "JPEG Baseline", "1.2.840.10008.1.2.4.51": "JPEG Extended",
            "1.2.840.10008.1.2.4.57": "JPEG Lossless", "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
            "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless", "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
            "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless", "1.2.840.10008.1.2.4.91": "JPEG 2000",
            "1.2.840.10008.1.2.4.201": "HTJ2K Lossless", "1.2.840.10008.1.2.4.202": "HTJ2K Lossless RPCL", "1.2.840.10008.1.2.4.203": "HTJ2K",
            "1.2.840.10008.1.2.4.100": "MPEG-2 MP@ML", "1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264", "1.2.840.10008.1.2.4.107": "HEVC/H.265",
        ]
        return names[uid].map { "\($0) (\(uid))" } ?? uid
    }

    private init(uid: String, explicitVR: Bool, littleEndian: Bool, deflated: Bool, encapsulated: Bool) {
        self.uid = uid
        self.explicitVR = explicitVR
        self.littleEndian = littleEndian
        self.deflated = deflated
        self.encapsulated = encapsulated
    }
}

/// One element of a data set.
public struct DataElement: Sendable {
    /// The value of an element, as read.
    public enum Value: Sendable {
        /// The value bytes as stored (in the data set's byte order).
        case bytes(ArraySlice<UInt8>)
        /// A sequence: its items.
        case sequence([DataSet])
        /// Encapsulated pixel data: the basic offset table, then each fragment, untouched.
        case fragments(offsetTable: ArraySlice<UInt8>, fragments: [ArraySlice<UInt8>])
    }

    /// The attribute this element holds.
    public let tag: DICOMTag
    /// The value representation: as stored in explicit VR, else from ``DataDictionary`` (`UN` for an
    /// unknown tag).
    public let vr: VR
    /// The value: bytes as stored, sequence items, or encapsulated fragments.
    public let value: Value
    /// Where the element starts in the bytes it was read from.
    public let offset: Int
}

/// A DICOM data set: elements by tag, in the order they were read.
public struct DataSet: Sendable {
    /// Every element, by tag (the last one read wins when a tag repeats).
    public private(set) var elements: [DICOMTag: DataElement] = [:]
    /// The tags of ``elements`` in the order they were first read.
    public private(set) var tags: [DICOMTag] = []
    /// The byte order of binary values.
    public let littleEndian: Bool
    /// The specific character set in force for text (inherited by sequence items).
    public internal(set) var characterSet: DICOMCharacterSet

    init(littleEndian: Bool, characterSet: DICOMCharacterSet = .default) {
        self.littleEndian = littleEndian
        self.characterSet = characterSet
    }

    mutating func append(_ element: DataElement) {
        if elements.updateValue(element, forKey: element.tag) == nil { tags.append(element.tag) }
    }

    /// The element with `tag`; `nil` when absent.
    public subscript(tag: DICOMTag) -> DataElement? { elements[tag] }

    /// The raw value bytes of `tag`, if it holds bytes.
    public func bytes(_ tag: DICOMTag) -> ArraySlice<UInt8>? {
        guard case .bytes(let bytes)? = elements[tag]?.value else { return nil }
        return bytes
    }

    /// The text of `tag` with padding removed, decoded with the character set for VRs that use it; the
    /// backslash-separated values joined as stored. `nil` when absent or empty.
    public func string(_ tag: DICOMTag) -> String? {
        guard let element = elements[tag], case .bytes(var bytes) = element.value else { return nil }
        while let last = bytes.last, last == 0x20 || last == 0x00 { bytes.removeLast() }
        if element.vr != .LT && element.vr != .ST && element.vr != .UT {
            while let first = bytes.first, first == 0x20 { bytes.removeFirst() }
        }
        guard !bytes.isEmpty else { return nil }
        let text = element.vr.usesCharacterSet ? characterSet.decode(bytes, personName: element.vr == .PN) : String(decoding: bytes, as: UTF8.self)
        return text
    }

    /// The values of a multi-valued text element, each trimmed.
    public func strings(_ tag: DICOMTag) -> [String] {
        guard let text = string(tag) else { return [] }
        return text.split(separator: "\\", omittingEmptySubsequences: false).map { $0.trimmingSpaces }
    }

    /// The first value of a US element (or SS, read as its bit pattern).
    public func uint16(_ tag: DICOMTag) -> UInt16? {
        guard let bytes = bytes(tag), bytes.count >= 2 else { return nil }
        let a = UInt16(bytes[bytes.startIndex]), b = UInt16(bytes[bytes.startIndex + 1])
        return littleEndian ? a | b << 8 : a << 8 | b
    }

    /// The first value of a UL element.
    public func uint32(_ tag: DICOMTag) -> UInt32? {
        guard let bytes = bytes(tag), bytes.count >= 4 else { return nil }
        var value: UInt32 = 0
        for index in 0..<4 {
            let byte = UInt32(bytes[bytes.startIndex + (littleEndian ? 3 - index : index)])
            value = value << 8 | byte
        }
        return value
    }

    /// The first value of an IS element, or of a US/UL element.
    public func integer(_ tag: DICOMTag) -> Int? {
        guard let element = elements[tag] else { return nil }
        switch element.vr {
        case .US: return uint16(tag).map(Int.init)
        case .SS: return uint16(tag).map { Int(Int16(bitPattern: $0)) }
        case .UL: return uint32(tag).map(Int.init)
        case .SL: return uint32(tag).map { Int(Int32(bitPattern: $0)) }
        default: return strings(tag).first.flatMap { Int($0) }
        }
    }

    /// The first value of a DS element (or FD/FL).
    public func double(_ tag: DICOMTag) -> Double? {
        doubles(tag).first
    }

    /// Every value of a DS, FD or FL element.
    public func doubles(_ tag: DICOMTag) -> [Double] {
        guard let element = elements[tag], case .bytes(let bytes) = element.value else { return [] }
        switch element.vr {
        case .FD:
            return stride(from: bytes.startIndex, to: bytes.endIndex - 7, by: 8).map { start in
                Double(bitPattern: Self.word(bytes[start..<start + 8], littleEndian: littleEndian))
            }
        case .FL:
            return stride(from: bytes.startIndex, to: bytes.endIndex - 3, by: 4).map { start in
                Double(Float(bitPattern: UInt32(truncatingIfNeeded: Self.word(bytes[start..<start + 4], littleEndian: littleEndian))))
            }
        default:
            return strings(tag).compactMap { Double($0) }
        }
    }

    /// The items of a sequence element.
    public func sequence(_ tag: DICOMTag) -> [DataSet] {
        guard case .sequence(let items)? = elements[tag]?.value else { return [] }
        return items
    }

    private static func word(_ bytes: ArraySlice<UInt8>, littleEndian: Bool) -> UInt64 {
        var value: UInt64 = 0
        let ordered = littleEndian ? Array(bytes.reversed()) : Array(bytes)
        for byte in ordered { value = value << 8 | UInt64(byte) }
        return value
    }
}

extension Substring {
    var trimmingSpaces: String {
        var slice = self[...]
        while slice.first == " " { slice.removeFirst() }
        while slice.last == " " { slice.removeLast() }
        return String(slice)
    }
}
