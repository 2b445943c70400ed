import CZlib

/// The pieces that turn decoded pixels into 8-bit pictures, shared by ``Thumbnail`` and ``FilmSheet``: the first
/// frame's samples as numbers, the modality rescale and linear VOI window (PS3.3 C.11.1, C.11.2.1.2.1),
/// MONOCHROME1 inversion, RGB scaled to 8 bits, and PNG encoding with zlib.
enum Rendering {
    /// The first frame of `file`, decoded, as one number per sample (interleaved when RGB). Colour other than
    /// RGB is refused, naming `purpose` ("thumbnails", "film").
    static func firstFrame(of file: DICOMFile, for purpose: String) throws(PixelError) -> (layout: PixelLayout, values: [Double]) {
        let (layout, bytes) = try firstFrameBytes(of: file, for: purpose)
        return (layout, samples(bytes, layout: layout))
    }

    /// The first frame's stored samples as little-endian bytes, for grey or RGB images only.
    static func firstFrameBytes(of file: DICOMFile, for purpose: String) throws(PixelError) -> (layout: PixelLayout, bytes: [UInt8]) {
        let (layout, bytes) = try PixelDecoder.decode(file)
        guard layout.samplesPerPixel == 1 || layout.photometricInterpretation == "RGB" else {
            throw .unsupported("\(purpose) of \(layout.photometricInterpretation) colour images")
        }
        return (layout, bytes)
    }

    /// Grey samples (stored values) to 8-bit levels: Rescale Slope/Intercept, then `window` if given, else the
    /// data set's own Window Center/Width, else one spanning the values' minimum to maximum; MONOCHROME1 is inverted.
    static func greyLevels(_ values: [Double], dataset: DataSet, photometric: String, window: (center: Double, width: Double)? = nil) -> [UInt8] {
        let slope = dataset.double(.rescaleSlope).flatMap { $0.isFinite ? $0 : nil } ?? 1
        let intercept = dataset.double(.rescaleIntercept).flatMap { $0.isFinite ? $0 : nil } ?? 0
        let rescaled = values.map { $0 * slope + intercept }
        let chosen: (center: Double, width: Double)
        if let window {
            chosen = window
        } else if let center = dataset.double(.windowCenter), let span = dataset.double(.windowWidth), center.isFinite, span.isFinite, span >= 1 {
            chosen = (center, span)
        } else {
            let finite = rescaled.filter(\.isFinite)
            let low = finite.min() ?? 0, high = finite.max() ?? 0
            chosen = ((low + high) / 2 + 0.5, max(1, high - low + 1))
        }
        let invert = photometric == "MONOCHROME1"
        return rescaled.map { value in
            let level = windowed(value, center: chosen.center, width: chosen.width)
            return invert ? 255 - level : level
        }
    }

    /// RGB samples of `bitsStored` bits to 8-bit levels.
    static func rgbLevels(_ values: [Double], bitsStored: Int) -> [UInt8] {
        let maximum = Double((1 << bitsStored) - 1)
        return values.map { UInt8(clamping: Int(($0 / maximum * 255).rounded())) }
    }

    /// The linear VOI window of PS3.3 C.11.2.1.2.1 onto 0...255.
    static func windowed(_ x: Double, center: Double, width: Double) -> UInt8 {
        // Values in a file may be anything (NaN or infinite from a DS of "NaN", "inf" or a huge rescale).
        guard x.isFinite, center.isFinite, width.isFinite else { return 0 }
        let low = center - 0.5 - (width - 1) / 2, high = center - 0.5 + (width - 1) / 2
        if x <= low { return 0 }
        if x > high { return 255 }
        guard width > 1 else { return 255 }
        let level = (((x - (center - 0.5)) / (width - 1) + 0.5) * 255).rounded()
        return level.isFinite ? UInt8(clamping: Int(max(-1, min(256, level)))) : 0
    }

    /// The first frame's samples as numbers (decoded samples are little endian).
    static func samples(_ bytes: [UInt8], layout: PixelLayout) -> [Double] {
        let count = layout.samplesPerFrame
        return [Double](unsafeUninitializedCapacity: count) { out, initialized in
            bytes.withUnsafeBytes { raw in
                switch (layout.bytesPerSample, layout.signed) {
                case (1, false): for i in 0..<count { out[i] = Double(raw[i]) }
                case (1, true): for i in 0..<count { out[i] = Double(Int8(bitPattern: raw[i])) }
                case (2, false): for i in 0..<count { out[i] = Double(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
                case (2, true): for i in 0..<count { out[i] = Double(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
                case (_, false): for i in 0..<count { out[i] = Double(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                case (_, true): for i in 0..<count { out[i] = Double(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
                }
            }
            initialized = count
        }
    }

    /// An 8-bit greyscale (1 channel) or RGB (3 channels) PNG, each row with filter type 0.
    static func encodePNG(_ pixels: [UInt8], width: Int, height: Int, channels: Int) -> [UInt8] {
        var raw: [UInt8] = []
        raw.reserveCapacity(height * (width * channels + 1))
        for y in 0..<height {
            raw.append(0)
            raw += pixels[(y * width * channels)..<((y + 1) * width * channels)]
        }
        var bound = compressBound(uLong(raw.count))
        var compressed = [UInt8](repeating: 0, count: Int(bound))
        _ = compress2(&compressed, &bound, raw, uLong(raw.count), 6)
        compressed.removeLast(compressed.count - Int(bound))
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var header: [UInt8] = []
        appendBigEndian(&header, UInt32(width))
        appendBigEndian(&header, UInt32(height))
        header += [8, channels == 3 ? 2 : 0, 0, 0, 0]
        chunk(&png, "IHDR", header)
        chunk(&png, "IDAT", compressed)
        chunk(&png, "IEND", [])
        return png
    }

    private static func chunk(_ png: inout [UInt8], _ type: String, _ data: [UInt8]) {
        appendBigEndian(&png, UInt32(data.count))
        let body = Array(type.utf8) + data
        png += body
        appendBigEndian(&png, UInt32(crc32(0, body, uInt(body.count))))
    }

    private static func appendBigEndian(_ out: inout [UInt8], _ value: UInt32) {
        out += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }
}
