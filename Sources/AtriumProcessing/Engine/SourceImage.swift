import AtriumDICOM
import AtriumImaging

/// What a result needs to know about an input: its pixel type and rescale (for OUTPUT_TYPE_SOURCE), its place
/// in a series, and the patient and study it belongs to.
struct SourceInfo: Sendable {
    var rows: Int
    var columns: Int
    var frames: Int
    var bitsAllocated: Int
    var signed: Bool
    /// Float Pixel Data (7FE0,0008): the input is itself a Float32 result.
    var isFloat: Bool
    var slope: Float
    var intercept: Float
    var patientID: String
    var patientName: String
    var studyInstanceUID: String
    var seriesInstanceUID: String
    var sopClassUID: String
    var sopInstanceUID: String
    var modality: String
    var instanceNumber: Int?
    var imagePosition: [Double]?
    var imageOrientation: [Double]?
    var pixelSpacing: [Double]?

    /// The geometry the series ordering uses.
    var geometry: SliceGeometry {
        SliceGeometry(rows: rows, columns: columns, imagePosition: imagePosition, imageOrientation: imageOrientation, instanceNumber: instanceNumber)
    }
}

/// A decoded input: its frames as Float32 images in rescaled units, and what it is.
struct SourceImage: Sendable {
    var frames: [Image2D]
    var info: SourceInfo
}

/// Decodes inputs. Every refusal is INVALID_ARGUMENT naming the input (`label`, e.g. "input 3 (image img_…)").
enum SourceDecoder {
    static let floatPixelData = DICOMTag(0x7FE0, 0x0008)

    /// The attributes of a parsed object, without its pixels; `elided` is the element a header read stopped at (the
    /// pixel data of an object larger than the prefix read), which counts as present.
    static func info(of file: DICOMFile, elided: DICOMTag? = nil, label: String) throws(EngineError) -> SourceInfo {
        let data = file.dataset
        let isFloat = data[floatPixelData] != nil || elided == floatPixelData
        guard isFloat || data[.pixelData] != nil || elided == .pixelData else {
            throw EngineError.invalidInput("\(label) has no pixel data")
        }
        let rows: Int, columns: Int, frames: Int, bitsAllocated: Int, signed: Bool
        if isFloat {
            guard let r = data.integer(.rows), let c = data.integer(.columns), (1...65535).contains(r), (1...65535).contains(c) else {
                throw EngineError.invalidInput("\(label): Rows and Columns must be 1 to 65535")
            }
            (rows, columns, frames, bitsAllocated, signed) = (r, c, max(1, data.integer(.numberOfFrames) ?? 1), 32, true)
        } else {
            let layout: PixelLayout
            do {
                layout = try PixelLayout(data)
            } catch {
                throw EngineError.invalidInput("\(label) is not a processable image: \(error.description)")
            }
            guard layout.samplesPerPixel == 1 else {
                throw EngineError.invalidInput("\(label) is a colour image (\(layout.photometricInterpretation)); processing takes grayscale images")
            }
            (rows, columns, frames, bitsAllocated, signed) = (layout.rows, layout.columns, layout.frames, layout.bitsAllocated, layout.signed)
        }
        let slope = data.double(.rescaleSlope) ?? 1
        let intercept = data.double(.rescaleIntercept) ?? 0
        guard slope.isFinite, slope != 0, intercept.isFinite else {
            throw EngineError.invalidInput("\(label) has an unusable Rescale Slope/Intercept (\(slope), \(intercept))")
        }
        func triple(_ tag: DICOMTag, _ count: Int) -> [Double]? {
            let values = data.doubles(tag)
            return values.count == count && values.allSatisfy(\.isFinite) ? values : nil
        }
        return SourceInfo(
            rows: rows,
            columns: columns,
            frames: frames,
            bitsAllocated: bitsAllocated,
            signed: signed,
            isFloat: isFloat,
            slope: Float(slope),
            intercept: Float(intercept),
            patientID: data.string(.patientID) ?? "",
            patientName: data.string(.patientName) ?? "",
            studyInstanceUID: data.string(.studyInstanceUID) ?? "",
            seriesInstanceUID: data.string(.seriesInstanceUID) ?? "",
            sopClassUID: data.string(.sopClassUID) ?? file.meta.string(.mediaStorageSOPClassUID) ?? "",
            sopInstanceUID: data.string(.sopInstanceUID) ?? file.meta.string(.mediaStorageSOPInstanceUID) ?? "",
            modality: data.string(.modality) ?? "OT",
            instanceNumber: data.integer(.instanceNumber),
            imagePosition: triple(.imagePositionPatient, 3),
            imageOrientation: triple(.imageOrientationPatient, 6),
            pixelSpacing: triple(.pixelSpacing, 2)
        )
    }

    /// Parses a whole DICOM Part 10 object.
    static func parse(_ bytes: [UInt8], label: String) throws(EngineError) -> DICOMFile {
        do {
            return try DICOMReader.read(bytes)
        } catch {
            throw EngineError.invalidInput("\(label) is not a readable DICOM object: \(error.description)")
        }
    }

    /// The attributes of an object from its first bytes (the pixel data need not be there).
    static func header(_ prefix: [UInt8], totalLength: Int, label: String) throws(EngineError) -> SourceInfo {
        let header: DICOMHeader
        do {
            header = try DICOMReader.readHeader(prefix, totalLength: totalLength)
        } catch {
            throw EngineError.invalidInput("\(label) is not a readable DICOM object: \(error.description)")
        }
        return try info(of: header.file, elided: header.elided?.tag, label: label)
    }

    /// Decodes a whole object: every frame as a Float32 image, `stored × slope + intercept`.
    static func decode(_ bytes: [UInt8], label: String) throws(EngineError) -> SourceImage {
        let file = try parse(bytes, label: label)
        let info = try info(of: file, label: label)
        let plane = info.rows * info.columns
        var frames: [Image2D] = []
        frames.reserveCapacity(info.frames)
        do {
            if info.isFloat {
                guard let raw = file.dataset.bytes(floatPixelData), raw.count >= plane * 4 * info.frames else {
                    throw EngineError.invalidInput("\(label): Float Pixel Data is shorter than \(info.rows)×\(info.columns)×\(info.frames) values")
                }
                let values: [Float] = raw.withUnsafeBytes { buffer in
                    (0..<(plane * info.frames)).map { Float(bitPattern: UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
                }
                for frame in 0..<info.frames {
                    frames.append(try Image2D(rows: info.rows, columns: info.columns, pixels: Array(values[(frame * plane)..<((frame + 1) * plane)])))
                }
                return SourceImage(frames: frames, info: info)
            }
            let (layout, pixels) = try PixelDecoder.decode(file)
            for frame in 0..<info.frames {
                let start = frame * layout.bytesPerFrame
                frames.append(try image(pixels, from: start, layout: layout, slope: info.slope, intercept: info.intercept))
            }
        } catch let error as PixelError {
            throw EngineError.invalidInput("\(label): the pixels cannot be decoded: \(error.description)")
        } catch let error as ImagingError {
            throw EngineError.invalidInput("\(label): \(error.detail)")
        } catch let error as EngineError {
            throw error
        } catch {
            throw EngineError.internalFault("\(label): \(error)")
        }
        return SourceImage(frames: frames, info: info)
    }

    /// One frame of little-endian samples as a rescaled Float32 image.
    private static func image(_ pixels: [UInt8], from start: Int, layout: PixelLayout, slope: Float, intercept: Float) throws(ImagingError) -> Image2D {
        let count = layout.rows * layout.columns
        func load<T: FixedWidthInteger>(_: T.Type) -> [T] {
            pixels.withUnsafeBytes { buffer in
                [T](unsafeUninitializedCapacity: count) { out, initialized in
                    for i in 0..<count { out[i] = T(littleEndian: buffer.loadUnaligned(fromByteOffset: start + i * MemoryLayout<T>.size, as: T.self)) }
                    initialized = count
                }
            }
        }
        switch (layout.bitsAllocated, layout.signed) {
        case (8, false): return try Image2D(rows: layout.rows, columns: layout.columns, samples: load(UInt8.self), slope: slope, intercept: intercept)
        case (8, true): return try Image2D(rows: layout.rows, columns: layout.columns, samples: load(Int8.self), slope: slope, intercept: intercept)
        case (16, false): return try Image2D(rows: layout.rows, columns: layout.columns, samples: load(UInt16.self), slope: slope, intercept: intercept)
        case (16, true): return try Image2D(rows: layout.rows, columns: layout.columns, samples: load(Int16.self), slope: slope, intercept: intercept)
        case (32, false): return try Image2D(rows: layout.rows, columns: layout.columns, samples: load(UInt32.self), slope: slope, intercept: intercept)
        default: return try Image2D(rows: layout.rows, columns: layout.columns, samples: load(Int32.self), slope: slope, intercept: intercept)
        }
    }
}
