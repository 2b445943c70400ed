/// Writes DICOM Part 10 files in explicit VR little endian: preamble, `DICM`, the file meta group (with its
/// group length), then the data set in ascending tag order. Values are padded to even length (text with a
/// space, UI and bytes with NUL).
public struct DICOMWriter: Sendable {
    /// One element to write.
    public enum Value: Sendable {
        /// Text, padded to even length with a space (NUL for `UI`).
        case text(String)
        /// 16-bit numbers (e.g. `US`, `SS`), written little endian.
        case uint16([UInt16])
        /// 32-bit numbers (e.g. `UL`, `SL`), written little endian.
        case uint32([UInt32])
        /// Raw value bytes (e.g. `OB`), padded to even length with NUL.
        case bytes([UInt8])
        /// Sequence items, each a set of elements, written with defined lengths.
        case sequence([[DICOMTag: (VR, Value)]])
    }

    /// The implementation version name written in file meta (0002,0013) unless the caller names another.
    public static let implementationVersion = "ATRIUM_0_1"

    private var elements: [DICOMTag: (VR, Value)] = [:]

    /// An empty writer: no elements set.
    public init() {}

    /// Sets an element (replacing any earlier value for the tag). A value too long for its VR's 2-byte length
    /// (over 65 534 bytes) is refused.
    public mutating func set(_ tag: DICOMTag, _ vr: VR, _ value: Value) throws(DICOMError) {
        let size: Int
        switch value {
        case .text(let text): size = text.utf8.count
        case .uint16(let values): size = values.count * 2
        case .uint32(let values): size = values.count * 4
        case .bytes(let bytes): size = bytes.count
        case .sequence: size = 0
        }
        guard vr.hasLongLength || size <= 65_534 else {
            throw DICOMError(offset: 0, reason: "a \(vr) value of \(size) bytes for \(tag) exceeds the 65534-byte limit of its VR")
        }
        guard size <= Int(UInt32.max - 1) else { throw DICOMError(offset: 0, reason: "a value of \(size) bytes for \(tag) is too large") }
        elements[tag] = (vr, value)
    }

    /// The Part 10 bytes. The meta group names `sopClassUID`, `sopInstanceUID` and explicit VR little endian,
    /// with the given implementation class UID.
    public func partTen(implementationClassUID: String, implementationVersion: String = DICOMWriter.implementationVersion) -> [UInt8] {
        let classUID: String
        if case .text(let text)? = elements[.sopClassUID]?.1 { classUID = text } else { classUID = "" }
        let instanceUID: String
        if case .text(let text)? = elements[.sopInstanceUID]?.1 { instanceUID = text } else { instanceUID = "" }
        var meta: [DICOMTag: (VR, Value)] = [
            DICOMTag(0x0002, 0x0001): (.OB, .bytes([0x00, 0x01])),
            .mediaStorageSOPClassUID: (.UI, .text(classUID)),
            .mediaStorageSOPInstanceUID: (.UI, .text(instanceUID)),
            .transferSyntaxUID: (.UI, .text(TransferSyntax.explicitLittleEndian.uid)),
            DICOMTag(0x0002, 0x0012): (.UI, .text(implementationClassUID)),
        ]
        meta[DICOMTag(0x0002, 0x0013)] = (.SH, .text(implementationVersion))
        let metaBody = Self.encode(meta)
        var out = [UInt8](repeating: 0, count: 128) + Array("DICM".utf8)
        out += Self.encodeElement(.fileMetaInformationGroupLength, .UL, .uint32([UInt32(metaBody.count)]))
        out += metaBody
        out += Self.encode(elements.filter { $0.key.group != 0x0002 })
        return out
    }

    /// The Part 10 bytes of ``partTen(implementationClassUID:implementationVersion:)`` up to and including the
    /// header of a Pixel Data element (`OB` or `OW`) of `pixelDataLength` bytes, for a caller that streams the
    /// pixel bytes after it, then one NUL byte when `pixelDataLength` is odd (the header states the padded,
    /// even length). Elements set with a tag at or above Pixel Data are left out.
    public func partTenPrefix(
        implementationClassUID: String,
        implementationVersion: String = DICOMWriter.implementationVersion,
        pixelDataVR: VR,
        pixelDataLength: UInt32
    ) throws(DICOMError) -> [UInt8] {
        guard pixelDataVR == .OB || pixelDataVR == .OW else {
            throw DICOMError(offset: 0, reason: "pixel data must be OB or OW, not \(pixelDataVR)")
        }
        guard pixelDataLength < UInt32.max - 1 else {
            throw DICOMError(offset: 0, reason: "\(pixelDataLength) bytes of pixel data do not fit one element")
        }
        var head = self
        head.elements = elements.filter { $0.key < .pixelData }
        var out = head.partTen(implementationClassUID: implementationClassUID, implementationVersion: implementationVersion)
        Self.append16(&out, DICOMTag.pixelData.group)
        Self.append16(&out, DICOMTag.pixelData.element)
        out += Array(pixelDataVR.rawValue.utf8)
        out += [0, 0]
        Self.append32(&out, pixelDataLength + pixelDataLength % 2)
        return out
    }

    static func encode(_ elements: [DICOMTag: (VR, Value)]) -> [UInt8] {
        var out: [UInt8] = []
        for tag in elements.keys.sorted() {
            let (vr, value) = elements[tag]!
            out += encodeElement(tag, vr, value)
        }
        return out
    }

    static func encodeElement(_ tag: DICOMTag, _ vr: VR, _ value: Value) -> [UInt8] {
        var out: [UInt8] = []
        append16(&out, tag.group)
        append16(&out, tag.element)
        out += Array(vr.rawValue.utf8)
        var body: [UInt8]
        switch value {
        case .text(let text):
            body = Array(text.utf8)
            if body.count % 2 == 1 { body.append(vr == .UI ? 0x00 : 0x20) }
        case .uint16(let values):
            body = []
            for value in values { append16(&body, value) }
        case .uint32(let values):
            body = []
            for value in values { append32(&body, value) }
        case .bytes(let bytes):
            body = bytes
            if body.count % 2 == 1 { body.append(0) }
        case .sequence(let items):
            body = []
            for item in items {
                let encoded = encode(item)
                append16(&body, 0xFFFE)
                append16(&body, 0xE000)
                append32(&body, UInt32(encoded.count))
                body += encoded
            }
        }
        if vr.hasLongLength {
            out += [0, 0]
            append32(&out, UInt32(body.count))
        } else {
            append16(&out, UInt16(clamping: body.count))
        }
        return out + body
    }

    private static func append16(_ out: inout [UInt8], _ value: UInt16) {
        out.append(UInt8(value & 0xFF))
        out.append(UInt8(value >> 8))
    }

    private static func append32(_ out: inout [UInt8], _ value: UInt32) {
        append16(&out, UInt16(value & 0xFFFF))
        append16(&out, UInt16(value >> 16))
    }
}
