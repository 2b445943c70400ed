import CZlib

/// 8-bit PNG thumbnails of the first frame: the longest edge scaled down to `maximumEdge` (box average), grey
/// images windowed by the object's window centre/width after its rescale (else stretched from min to max),
/// MONOCHROME1 inverted, RGB kept. PNG is written with zlib; no imaging library.
public enum Thumbnail {
    /// A PNG of `file`'s first frame.
    public static func png(of file: DICOMFile, maximumEdge: Int = 128) throws(PixelError) -> [UInt8] {
        let (layout, bytes) = try PixelDecoder.decode(file)
        let data = file.dataset
        let rgb = layout.samplesPerPixel == 3
        guard !rgb || layout.photometricInterpretation == "RGB" else {
            throw .unsupported("thumbnails of \(layout.photometricInterpretation) colour images")
        }
        let values = samples(bytes, layout: layout)
        let scale = min(1.0, Double(maximumEdge) / Double(max(layout.rows, layout.columns)))
        let width = max(1, Int((Double(layout.columns) * scale).rounded()))
        let height = max(1, Int((Double(layout.rows) * scale).rounded()))
        let channels = layout.samplesPerPixel
        var small = [Double](repeating: 0, count: width * height * channels)
        // Every index below is within the frame by construction (y1 <= rows, x1 <= columns): no bounds checks.
        values.withUnsafeBufferPointer { source in
            small.withUnsafeMutableBufferPointer { target in
                for y in 0..<height {
                    let y0 = y * layout.rows / height, y1 = max(y0 + 1, (y + 1) * layout.rows / height)
                    for x in 0..<width {
                        let x0 = x * layout.columns / width, x1 = max(x0 + 1, (x + 1) * layout.columns / width)
                        for channel in 0..<channels {
                            var sum = 0.0
                            for sy in y0..<y1 {
                                var index = (sy * layout.columns + x0) * channels + channel
                                for _ in x0..<x1 {
                                    sum += source[index]
                                    index += channels
                                }
                            }
                            target[(y * width + x) * channels + channel] = sum / Double((y1 - y0) * (x1 - x0))
                        }
                    }
                }
            }
        }
        let pixels: [UInt8]
        if rgb {
            let maximum = Double((1 << layout.bitsStored) - 1)
            pixels = small.map { UInt8(clamping: Int(($0 / maximum * 255).rounded())) }
        } else {
            let slope = data.double(.rescaleSlope).flatMap { $0.isFinite ? $0 : nil } ?? 1
            let intercept = data.double(.rescaleIntercept).flatMap { $0.isFinite ? $0 : nil } ?? 0
            let rescaled = small.map { $0 * slope + intercept }
            let window: (center: Double, width: Double)
            if let center = data.double(.windowCenter), let span = data.double(.windowWidth), center.isFinite, span.isFinite, span >= 1 {
                window = (center, span)
            } else {
                let finite = rescaled.filter(\.isFinite)
                let low = finite.min() ?? 0, high = finite.max() ?? 0
                window = ((low + high) / 2 + 0.5, max(1, high - low + 1))
            }
            let invert = layout.photometricInterpretation == "MONOCHROME1"
            pixels = rescaled.map { value in
                let level = windowed(value, center: window.center, width: window.width)
                return invert ? 255 - level : level
            }
        }
        return encodePNG(pixels, width: width, height: height, channels: channels)
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
    private static func samples(_ bytes: [UInt8], layout: PixelLayout) -> [Double] {
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
