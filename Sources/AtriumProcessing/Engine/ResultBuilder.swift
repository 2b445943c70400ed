import AtriumAPI
import AtriumDICOM
import AtriumImaging
import Crypto
import Foundation

/// A result as DICOM Part 10 bytes, with what the result stream's `ResultImage` says about it.
struct BuiltResult: Sendable {
    var bytes: [UInt8]
    var sopInstanceUID: String
    var rows: Int
    var columns: Int
    var bitsAllocated: Int
}

/// Writes results as derived Secondary Capture objects: Image Type DERIVED\SECONDARY, a Derivation Description
/// naming the operation as applied and the software, and a Source Image Sequence listing every input.
///
/// UIDs are derived from the request (operation, output type, inputs, software version), not drawn at
/// random, so running the same request again makes byte-identical objects: registering them again is a no-op
/// and a destination's inbox gets the result once, however often a job is resumed or a shard retried.
/// For the same reason the objects carry no creation time.
struct ResultBuilder: Sendable {
    let plan: OperationPlan
    /// Identifies the request: equal keys make equal UIDs.
    let derivationKey: String
    let softwareVersion: String

    /// Atrium's implementation class UID (the registry's, under the `2.25` root).
    static let implementationClassUID = Transcoder.implementationClassUID

    /// A `2.25` UID from a SHA-256 of `parts` (the first 128 bits as a decimal integer).
    static func uid(_ parts: String...) -> String {
        let digest = Array(SHA256.hash(data: Data(parts.joined(separator: "\u{0}").utf8)))
        var value: UInt128 = 0
        for byte in digest.prefix(16) { value = value << 8 | UInt128(byte) }
        return "2.25.\(value)"
    }

    var seriesInstanceUID: String { Self.uid("atrium-processing-series", softwareVersion, derivationKey) }

    /// Writes result `index` (0-based) of `count`, made from `sources` (in input order), whose first source gives
    /// the patient, study and, for OUTPUT_TYPE_SOURCE, the pixel type and rescale.
    func build(_ frames: [Image2D], index: Int, sources: [SourceInfo], geometry: SourceInfo?) throws(EngineError) -> BuiltResult {
        guard let first = sources.first, let shape = frames.first else {
            throw EngineError.internalFault("a result needs at least one source and one frame")
        }
        let sopInstanceUID = Self.uid("atrium-processing-instance", softwareVersion, derivationKey, String(index))
        var writer = DICOMWriter()
        let bits: Int
        do {
            try writer.set(.specificCharacterSet, .CS, .text("ISO_IR 192"))
            try writer.set(DICOMTag(0x0008, 0x0008), .CS, .text("DERIVED\\SECONDARY"))
            try writer.set(.sopClassUID, .UI, .text("1.2.840.10008.5.1.4.1.1.7"))  // Secondary Capture Image Storage
            try writer.set(.sopInstanceUID, .UI, .text(sopInstanceUID))
            try writer.set(DICOMTag(0x0008, 0x0064), .CS, .text("WSD"))  // Conversion Type: workstation
            try writer.set(.modality, .CS, .text(first.modality.isEmpty ? "OT" : first.modality))
            try writer.set(DICOMTag(0x0008, 0x103E), .LO, .text(String("Atrium \(plan.summary)".prefix(64))))  // Series Description
            try writer.set(.derivationDescription, .ST, .text("\(plan.summary); output \(plan.outputType == .source ? "source type" : "float32"); Atrium processing \(softwareVersion)"))
            try writer.set(DICOMTag(0x0008, 0x2112), .SQ, .sequence(sources.map { source in  // Source Image Sequence
                [
                    DICOMTag(0x0008, 0x1150): (.UI, .text(source.sopClassUID)),
                    DICOMTag(0x0008, 0x1155): (.UI, .text(source.sopInstanceUID)),
                ]
            }))
            try writer.set(.patientName, .PN, .text(first.patientName))
            try writer.set(.patientID, .LO, .text(first.patientID))
            try writer.set(.studyInstanceUID, .UI, .text(first.studyInstanceUID.isEmpty ? Self.uid("atrium-processing-study", softwareVersion, derivationKey) : first.studyInstanceUID))
            try writer.set(.seriesInstanceUID, .UI, .text(seriesInstanceUID))
            try writer.set(DICOMTag(0x0020, 0x0011), .IS, .text("900"))  // Series Number: derived series
            try writer.set(.instanceNumber, .IS, .text(String(index + 1)))
            if let geometry {
                if let position = geometry.imagePosition { try writer.set(.imagePositionPatient, .DS, .text(Self.decimals(position))) }
                if let orientation = geometry.imageOrientation { try writer.set(.imageOrientationPatient, .DS, .text(Self.decimals(orientation))) }
                if let spacing = geometry.pixelSpacing { try writer.set(.pixelSpacing, .DS, .text(Self.decimals(spacing))) }
            }
            try writer.set(.samplesPerPixel, .US, .uint16([1]))
            try writer.set(.photometricInterpretation, .CS, .text("MONOCHROME2"))
            if frames.count > 1 { try writer.set(.numberOfFrames, .IS, .text(String(frames.count))) }
            try writer.set(.rows, .US, .uint16([UInt16(shape.rows)]))
            try writer.set(.columns, .US, .uint16([UInt16(shape.columns)]))
            switch plan.outputType {
            case .source:
                guard !first.isFloat else {
                    throw EngineError.invalidInput("output_type SOURCE needs an integer first input; input 0 holds float pixels")
                }
                bits = first.bitsAllocated
                try writer.set(.bitsAllocated, .US, .uint16([UInt16(bits)]))
                try writer.set(.bitsStored, .US, .uint16([UInt16(bits)]))
                try writer.set(.highBit, .US, .uint16([UInt16(bits - 1)]))
                try writer.set(.pixelRepresentation, .US, .uint16([first.signed ? 1 : 0]))
                if first.slope != 1 || first.intercept != 0 {
                    try writer.set(.rescaleIntercept, .DS, .text(Self.decimal(Double(first.intercept))))
                    try writer.set(.rescaleSlope, .DS, .text(Self.decimal(Double(first.slope))))
                }
                try writer.set(.pixelData, bits == 8 ? .OB : .OW, .bytes(Self.samples(frames, of: first)))
            default:
                bits = 32
                try writer.set(.bitsAllocated, .US, .uint16([32]))
                try writer.set(SourceDecoder.floatPixelData, .OF, .bytes(Self.floats(frames)))
            }
        } catch let error as DICOMError {
            throw EngineError.internalFault("the result cannot be written as DICOM: \(error.reason)")
        } catch let error as EngineError {
            throw error
        } catch {
            throw EngineError.internalFault("the result cannot be written as DICOM: \(error)")
        }
        return BuiltResult(
            bytes: writer.partTen(implementationClassUID: Self.implementationClassUID),
            sopInstanceUID: sopInstanceUID,
            rows: shape.rows,
            columns: shape.columns,
            bitsAllocated: bits
        )
    }

    /// The frames as little-endian Float32 values, one frame after another.
    static func floats(_ frames: [Image2D]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(frames.reduce(0) { $0 + $1.pixels.count * 4 })
        for frame in frames {
            frame.pixels.withUnsafeBytes { out.append(contentsOf: $0) }  // little-endian hosts only (x86-64, arm64)
        }
        return out
    }

    /// The frames in the source's stored type: mapped back through its rescale, rounded half away from zero and
    /// clamped.
    static func samples(_ frames: [Image2D], of source: SourceInfo) -> [UInt8] {
        var out: [UInt8] = []
        func append<T: FixedWidthInteger>(_ type: T.Type) {
            for frame in frames {
                frame.samples(as: type, slope: source.slope, intercept: source.intercept).withUnsafeBytes { out.append(contentsOf: $0) }
            }
        }
        switch (source.bitsAllocated, source.signed) {
        case (8, false): append(UInt8.self)
        case (8, true): append(Int8.self)
        case (16, false): append(UInt16.self)
        case (16, true): append(Int16.self)
        case (32, false): append(UInt32.self)
        default: append(Int32.self)
        }
        return out
    }

    /// A DS value: at most 16 characters.
    static func decimal(_ value: Double) -> String {
        for digits in stride(from: 10, through: 1, by: -1) {
            let text = String(format: "%.\(digits)g", value)
            if text.utf8.count <= 16 { return text }
        }
        return "0"
    }

    static func decimals(_ values: [Double]) -> String {
        values.map(decimal).joined(separator: "\\")
    }
}
