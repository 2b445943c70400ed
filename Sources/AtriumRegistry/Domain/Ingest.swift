import AtriumAPI
import AtriumCore
import AtriumDICOM
import Crypto
import Foundation
import SwiftProtobuf
import AtriumRuntime

/// What ingest learns from an uploaded object, before anything is committed.
struct ParsedImage: Sendable {
    var metadata: ImageMetadata
    /// The conditions recorded in the object.
    var conditions: Atrium_V1_AcquisitionConditions
    var thumbnail: ThumbnailRow?
    /// Why there is no thumbnail.
    var pixelNote: String?
}

/// Reading an upload: the object is parsed (a malformed one is refused with the byte offset and the reason)
/// and a thumbnail is made from its first frame.
///
/// Objects up to `wholeLimit` bytes (and deflated ones up to `deflatedLimit`) are read whole. A larger one is
/// read from its first `wholeLimit` bytes up to the first top-level value that runs past them (usually the pixel
/// data): memory stays bounded whatever the size. Its thumbnail then comes from the first frame alone, read on
/// its own, when the pixel data is native; encapsulated pixel data of such an object is stored unchecked, and
/// elements after the elided value are not read. One whose structure runs past the prefix otherwise (a top-level
/// sequence of undefined length larger than 16 MiB) is refused.
enum Ingest {
    /// 16 MiB: every single-frame CT, MR, CR and DX object is read whole.
    static let wholeLimit = 16 << 20
    /// 256 MiB: the largest deflated object (read whole, since deflate hides where its elements are).
    static let deflatedLimit = 256 << 20

    /// Parses the `size` bytes that `read(offset, length)` returns; INVALID_ARGUMENT when they are not a DICOM
    /// object we can index.
    ///
    /// Pixel data in a syntax that is stored but not decoded here (JPEG baseline, JPEG 2000, ...) is accepted
    /// without a thumbnail. Pixel data that contradicts its own description is refused.
    static func parse(
        size: UInt64,
        thumbnailEdge: Int,
        wholeLimit: Int = Ingest.wholeLimit,
        read: (_ offset: UInt64, _ length: Int) throws -> [UInt8]
    ) throws -> ParsedImage {
        var file: DICOMFile
        var firstFrame: DICOMFile?
        var pixelDataElided = false
        do {
            if size <= UInt64(wholeLimit) {
                file = try DICOMReader.read(read(0, Int(size)))
            } else {
                let prefix = try read(0, wholeLimit)
                if try DICOMReader.transferSyntax(ofPartTen: prefix).deflated {
                    // Deflate hides where the elements are: a deflated object is read whole, up to a bound.
                    guard size <= UInt64(deflatedLimit) else {
                        throw RegistryError.invalidArgument("a deflated object larger than \(deflatedLimit >> 20) MiB is not accepted; send it uncompressed")
                    }
                    return try finish(DICOMReader.read(read(0, Int(size))), pixelDataElided: false, firstFrame: nil, thumbnailEdge: thumbnailEdge)
                }
                let header = try DICOMReader.readHeader(prefix, totalLength: Int(size))
                file = header.file
                pixelDataElided = header.elided?.tag == .pixelData
                if let elided = header.elided, elided.tag == .pixelData, let length = elided.length, !header.file.transferSyntax.encapsulated {
                    // The checks the whole-object path makes through the decoder: a layout that reads, and
                    // pixel data as long as the frames it describes.
                    let layout: PixelLayout
                    do {
                        layout = try PixelLayout(header.file.dataset)
                    } catch where error.unsupported {
                        return try finish(file, pixelDataElided: true, firstFrame: nil, thumbnailEdge: thumbnailEdge, note: error.description)
                    } catch {
                        throw RegistryError.invalidArgument("the pixel data cannot be decoded: \(error)")
                    }
                    guard layout.bytesPerFrame * layout.frames <= length else {
                        throw RegistryError.invalidArgument("the pixel data holds \(length) bytes, fewer than the \(layout.frames) frame(s) it describes")
                    }
                    firstFrame = header.withFirstFrame(try read(UInt64(elided.valueOffset), layout.bytesPerFrame))
                }
            }
        } catch let error as DICOMError {
            throw RegistryError.invalidArgument("malformed DICOM \(error)")
        }
        return try finish(file, pixelDataElided: pixelDataElided, firstFrame: firstFrame, thumbnailEdge: thumbnailEdge)
    }

    private static func finish(
        _ file: DICOMFile,
        pixelDataElided: Bool,
        firstFrame: DICOMFile?,
        thumbnailEdge: Int,
        note elidedNote: String? = nil
    ) throws -> ParsedImage {
        var file = file
        var metadata = ImageMetadata(file)
        if pixelDataElided { metadata.frames = file.dataset.integer(.numberOfFrames) ?? 1 }
        try checkRanges(metadata)
        metadata.limitText()
        guard let sop = metadata.sopInstanceUID else {
            throw RegistryError.invalidArgument("the object has no SOP Instance UID (0008,0018)")
        }
        try checkUID(sop, name: "SOP Instance UID (0008,0018)")
        for (uid, name) in [(metadata.studyInstanceUID, "Study Instance UID (0020,000D)"), (metadata.seriesInstanceUID, "Series Instance UID (0020,000E)")] {
            if let uid { try checkUID(uid, name: name) }
        }
        let conditions = Conditions.read(file.dataset, modality: metadata.modality)
        if let firstFrame { file = firstFrame }
        var thumbnail: ThumbnailRow?
        var note: String? = "the object has no pixel data"
        if file.dataset[.pixelData] != nil {
            do {
                let png = try Thumbnail.png(of: file, maximumEdge: thumbnailEdge)
                thumbnail = ThumbnailRow(png: png)
                note = nil
            } catch where error.unsupported {
                note = error.description
            } catch {
                throw RegistryError.invalidArgument("the pixel data cannot be decoded: \(error)")
            }
        }
        if pixelDataElided && thumbnail == nil && note == "the object has no pixel data" {
            note = elidedNote ?? "no thumbnail is made of encapsulated pixel data past the first 16 MiB of an object"
        }
        return ParsedImage(metadata: metadata, conditions: conditions, thumbnail: thumbnail, pixelNote: note)
    }

    /// The image attributes the index keeps as numbers must be in their DICOM ranges when present.
    static func checkRanges(_ metadata: ImageMetadata) throws {
        for (value, name, range) in [
            (metadata.rows, "Rows (0028,0010)", 1...65535), (metadata.columns, "Columns (0028,0011)", 1...65535),
            (metadata.bitsAllocated, "Bits Allocated (0028,0100)", 1...64), (metadata.frames, "Number of Frames (0028,0008)", 1...100_000),
        ] {
            if let value, !range.contains(value) {
                throw RegistryError.invalidArgument("\(name) is \(value); it must be \(range.lowerBound) to \(range.upperBound)")
            }
        }
        if let number = metadata.instanceNumber, !(Int(Int32.min)...Int(Int32.max)).contains(number) {
            throw RegistryError.invalidArgument("Instance Number (0020,0013) is out of range")
        }
    }

    /// A UID as the index keeps it: 1 to 64 characters, digits and dots.
    static func checkUID(_ uid: String, name: String) throws {
        guard (1...64).contains(uid.utf8.count), uid.utf8.allSatisfy({ $0 == UInt8(ascii: ".") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else {
            throw RegistryError.invalidArgument("\(name) '\(uid.prefix(80))' is not a UID (1 to 64 digits and dots)")
        }
    }
}

extension ThumbnailRow {
    /// A row for a PNG made at ingest; its size is read from the PNG's header.
    init(png: [UInt8]) {
        func word(_ at: Int) -> Int {
            png.count >= at + 4 ? png[at..<at + 4].reduce(0) { $0 << 8 | Int($1) } : 0
        }
        self.init(sha256: Hex.encode(SHA256.hash(data: png)), png: Data(png), width: word(16), height: word(20))
    }
}

/// Raw pixels with an explicit header, wrapped into a DICOM object with new UIDs: the Part 10 bytes up to the
/// Pixel Data header are written first, then the pixel bytes stream in after them as they arrive.
struct RawPixelsWrapper {
    /// The pixel bytes the header announces.
    let pixelBytes: UInt64
    /// The Part 10 bytes before the pixel bytes.
    let prefix: [UInt8]

    /// Validates `raw` (INVALID_ARGUMENT naming the field) and builds the object's elements.
    init(_ raw: Atrium_V1_RawPixelsHeader, comment: String, uids: UIDGenerator, maximumBytes: UInt64, now: Date = Date()) throws {
        guard (1...65535).contains(raw.rows), (1...65535).contains(raw.columns) else {
            throw RegistryError.invalidArgument("raw.rows and raw.columns must be 1 to 65535")
        }
        guard [8, 16, 32].contains(raw.bitsAllocated) else { throw RegistryError.invalidArgument("raw.bits_allocated must be 8, 16 or 32") }
        let photometric = raw.photometricInterpretation.isEmpty ? "MONOCHROME2" : raw.photometricInterpretation
        guard ["MONOCHROME1", "MONOCHROME2", "RGB"].contains(photometric) else {
            throw RegistryError.invalidArgument("raw.photometric_interpretation must be MONOCHROME1, MONOCHROME2 or RGB")
        }
        let samples: UInt32 = photometric == "RGB" ? 3 : 1
        guard samples == 1 || (raw.bitsAllocated == 8 && !raw.signed) else {
            throw RegistryError.invalidArgument("raw RGB pixels must be 8-bit unsigned")
        }
        let frames = raw.frames == 0 ? 1 : raw.frames
        guard frames <= 100_000 else { throw RegistryError.invalidArgument("raw.frames must be at most 100000") }
        guard !raw.patientID.isEmpty, raw.patientID.utf8.count <= 64 else {
            throw RegistryError.invalidArgument("raw.patient_id is required, at most 64 bytes")
        }
        guard (1...16).contains(raw.modality.utf8.count), raw.modality.utf8.allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }) else {
            throw RegistryError.invalidArgument("raw.modality must be a DICOM modality code such as CT, MR, US, PT, CR or DX")
        }
        for (value, name, limit) in [(raw.patientName, "patient_name", 64), (raw.deviceID, "device_id", 16), (raw.bodyPart, "body_part", 16)] {
            guard value.utf8.count <= limit else { throw RegistryError.invalidArgument("raw.\(name) is longer than \(limit) bytes") }
        }
        for (uid, name) in [(raw.studyInstanceUid, "raw.study_instance_uid"), (raw.seriesInstanceUid, "raw.series_instance_uid")] where !uid.isEmpty {
            try Ingest.checkUID(uid, name: name)
        }
        guard raw.rescaleSlope.isFinite, raw.rescaleIntercept.isFinite else {
            throw RegistryError.invalidArgument("raw.rescale_slope and raw.rescale_intercept must be finite")
        }
        let pixelBytes = UInt64(raw.rows) * UInt64(raw.columns) * UInt64(samples) * UInt64(raw.bitsAllocated / 8) * UInt64(frames)
        guard pixelBytes <= min(maximumBytes, UInt64(UInt32.max - 2)) else {
            throw RegistryError.invalidArgument("raw pixels of \(pixelBytes) bytes exceed the \(min(maximumBytes, UInt64(UInt32.max - 2)))-byte limit per image")
        }
        let acquired = raw.hasAcquiredAt ? raw.acquiredAt.date : now
        var writer = DICOMWriter()
        let gray = samples == 1
        let sopClass: String
        switch (frames > 1, gray, raw.bitsAllocated) {
        case (false, _, _): sopClass = "1.2.840.10008.5.1.4.1.1.7"  // Secondary Capture
        case (true, true, 8): sopClass = "1.2.840.10008.5.1.4.1.1.7.2"  // Multi-frame Grayscale Byte SC
        case (true, true, 16): sopClass = "1.2.840.10008.5.1.4.1.1.7.3"  // Multi-frame Grayscale Word SC
        case (true, false, _): sopClass = "1.2.840.10008.5.1.4.1.1.7.4"  // Multi-frame True Color SC
        default: sopClass = "1.2.840.10008.5.1.4.1.1.7"
        }
        do {
            try writer.set(.specificCharacterSet, .CS, .text("ISO_IR 192"))
            try writer.set(DICOMTag(0x0008, 0x0008), .CS, .text("ORIGINAL\\PRIMARY"))
            try writer.set(.sopClassUID, .UI, .text(sopClass))
            try writer.set(.sopInstanceUID, .UI, .text(uids.make()))
            try writer.set(.studyDate, .DA, .text(DICOMDate.date(acquired)))
            try writer.set(.studyTime, .TM, .text(DICOMDate.time(acquired)))
            try writer.set(.contentDate, .DA, .text(DICOMDate.date(acquired)))
            try writer.set(.contentTime, .TM, .text(DICOMDate.time(acquired)))
            try writer.set(.acquisitionDateTime, .DT, .text(DICOMDate.date(acquired) + DICOMDate.time(acquired) + "+0000"))
            try writer.set(DICOMTag(0x0008, 0x0064), .CS, .text("WSD"))  // Conversion Type: workstation
            try writer.set(.modality, .CS, .text(raw.modality))
            if !raw.deviceID.isEmpty { try writer.set(.stationName, .SH, .text(raw.deviceID)) }
            try writer.set(.patientName, .PN, .text(raw.patientName))
            try writer.set(.patientID, .LO, .text(raw.patientID))
            if !raw.bodyPart.isEmpty { try writer.set(.bodyPartExamined, .CS, .text(raw.bodyPart.uppercased())) }
            try writer.set(.studyInstanceUID, .UI, .text(raw.studyInstanceUid.isEmpty ? uids.make() : raw.studyInstanceUid))
            try writer.set(.seriesInstanceUID, .UI, .text(raw.seriesInstanceUid.isEmpty ? uids.make() : raw.seriesInstanceUid))
            try writer.set(.instanceNumber, .IS, .text("1"))
            if !comment.isEmpty { try writer.set(.imageComments, .LT, .text(comment)) }
            try writer.set(.samplesPerPixel, .US, .uint16([UInt16(samples)]))
            try writer.set(.photometricInterpretation, .CS, .text(photometric))
            if !gray { try writer.set(.planarConfiguration, .US, .uint16([0])) }
            if frames > 1 { try writer.set(.numberOfFrames, .IS, .text(String(frames))) }
            try writer.set(.rows, .US, .uint16([UInt16(raw.rows)]))
            try writer.set(.columns, .US, .uint16([UInt16(raw.columns)]))
            try writer.set(.bitsAllocated, .US, .uint16([UInt16(raw.bitsAllocated)]))
            try writer.set(.bitsStored, .US, .uint16([UInt16(raw.bitsAllocated)]))
            try writer.set(.highBit, .US, .uint16([UInt16(raw.bitsAllocated - 1)]))
            try writer.set(.pixelRepresentation, .US, .uint16([raw.signed ? 1 : 0]))
            if gray && (raw.rescaleSlope != 0 || raw.rescaleIntercept != 0) {
                try writer.set(.rescaleIntercept, .DS, .text(DICOMDate.decimal(raw.rescaleIntercept)))
                try writer.set(.rescaleSlope, .DS, .text(DICOMDate.decimal(raw.rescaleSlope == 0 ? 1 : raw.rescaleSlope)))
            }
            self.prefix = try writer.partTenPrefix(
                implementationClassUID: uids.implementationClassUID,
                pixelDataVR: raw.bitsAllocated == 8 ? .OB : .OW,
                pixelDataLength: UInt32(pixelBytes)
            )
        } catch {
            throw RegistryError.invalidArgument("the raw header cannot be written as DICOM: \(error.reason)")
        }
        self.pixelBytes = pixelBytes
    }
}

/// Formatting of DICOM DA, TM and DS values.
enum DICOMDate {
    private static func utc(_ date: Date) -> DateComponents {
        Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: date)
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    /// `YYYYMMDD` in UTC.
    static func date(_ date: Date) -> String {
        let c = utc(date)
        return pad(c.year ?? 1970, 4) + pad(c.month ?? 1, 2) + pad(c.day ?? 1, 2)
    }

    /// `HHMMSS.FFFFFF` in UTC.
    static func time(_ date: Date) -> String {
        let c = utc(date)
        return pad(c.hour ?? 0, 2) + pad(c.minute ?? 0, 2) + pad(c.second ?? 0, 2) + "." + pad((c.nanosecond ?? 0) / 1000, 6)
    }

    /// A DS value: at most 16 characters.
    static func decimal(_ value: Double) -> String {
        let text = String(value)
        return text.count <= 16 ? text : String(format: "%.10g", value)
    }
}

/// Makes new DICOM UIDs under a root: `2.25.<UUID as a decimal integer>` for the default root (the
/// standard's way without a registered root), else `<root>.<milliseconds>.<64 random bits>`.
struct UIDGenerator: Sendable {
    let root: String

    /// The implementation class UID written in file meta: the root's own.
    var implementationClassUID: String { root == "2.25" ? "2.25.83154958613580209785183808806154812001" : "\(root).1" }

    func make() -> String {
        if root == "2.25" {
            let uuid = UUID().uuid
            let bytes = withUnsafeBytes(of: uuid) { Array($0) }
            let value = bytes.reduce(UInt128(0)) { $0 << 8 | UInt128($1) }
            return "2.25.\(value)"
        }
        let millis = UInt64(Date().timeIntervalSince1970 * 1000)
        return "\(root).\(millis).\(UInt64.random(in: 1...UInt64.max))"
    }
}
