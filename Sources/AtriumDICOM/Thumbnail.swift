/// 8-bit PNG thumbnails of the first frame: the longest edge scaled down to `maximumEdge` (box average), grey
/// images windowed by the object's window centre/width after its rescale (else stretched from min to max),
/// MONOCHROME1 inverted, RGB kept. PNG is written with zlib; no imaging library.
public enum Thumbnail {
    /// A PNG of `file`'s first frame.
    public static func png(of file: DICOMFile, maximumEdge: Int = 128) throws(PixelError) -> [UInt8] {
        let (layout, bytes) = try Rendering.firstFrameBytes(of: file, for: "thumbnails")
        let scale = min(1.0, Double(maximumEdge) / Double(max(layout.rows, layout.columns)))
        let width = max(1, Int((Double(layout.columns) * scale).rounded()))
        let height = max(1, Int((Double(layout.rows) * scale).rounded()))
        let channels = layout.samplesPerPixel
        // Averaged straight from the stored samples, without a Double copy of the whole frame; the same sums, in
        // the same order, as averaging `Rendering.samples`.
        let small = bytes.withUnsafeBytes { raw -> [Double] in
            switch (layout.bytesPerSample, layout.signed) {
            case (1, false): boxAverage(raw, UInt8.self, layout: layout, width: width, height: height)
            case (1, true): boxAverage(raw, Int8.self, layout: layout, width: width, height: height)
            case (2, false): boxAverage(raw, UInt16.self, layout: layout, width: width, height: height)
            case (2, true): boxAverage(raw, Int16.self, layout: layout, width: width, height: height)
            case (_, false): boxAverage(raw, UInt32.self, layout: layout, width: width, height: height)
            case (_, true): boxAverage(raw, Int32.self, layout: layout, width: width, height: height)
            }
        }
        let pixels =
            channels == 3
            ? Rendering.rgbLevels(small, bitsStored: layout.bitsStored)
            : Rendering.greyLevels(small, dataset: file.dataset, photometric: layout.photometricInterpretation)
        return Rendering.encodePNG(pixels, width: width, height: height, channels: channels)
    }

    /// The frame's samples of type `Sample` (little endian) averaged over `width`×`height` boxes, per channel.
    /// Sums are integers: exact, and so equal to summing the samples as Doubles whenever those sums are exact too
    /// (below 2^53: every box of 16-bit samples, and of 32-bit ones up to 2^21 samples a box), at a fraction of the
    /// cost.
    static func boxAverage<Sample: FixedWidthInteger>(
        _ raw: UnsafeRawBufferPointer,
        _: Sample.Type,
        layout: PixelLayout,
        width: Int,
        height: Int
    ) -> [Double] {
        let channels = layout.samplesPerPixel
        let stride = MemoryLayout<Sample>.size
        let columns = layout.columns
        let rowSamples = columns * channels
        // The source columns of each output column: [starts[x], ends[x]).
        let starts = (0..<width).map { $0 * columns / width }
        let ends = (0..<width).map { x in max(starts[x] + 1, (x + 1) * columns / width) }
        // Per output row: the box's source rows added column by column (a loop the compiler vectorises), then each
        // box's columns summed.
        var columnSums = [Int64](repeating: 0, count: rowSamples)
        return [Double](unsafeUninitializedCapacity: width * height * channels) { target, initialized in
            columnSums.withUnsafeMutableBufferPointer { sums in
                // Every offset below is within the frame by construction (y1 <= rows, x1 <= columns).
                for y in 0..<height {
                    let y0 = y * layout.rows / height, y1 = max(y0 + 1, (y + 1) * layout.rows / height)
                    for index in 0..<rowSamples { sums[index] = 0 }
                    for sy in y0..<y1 {
                        let row = raw.baseAddress! + sy * rowSamples * stride
                        for index in 0..<rowSamples {
                            sums[index] &+= Int64(truncatingIfNeeded: Sample(littleEndian: row.loadUnaligned(fromByteOffset: index &* stride, as: Sample.self)))
                        }
                    }
                    for x in 0..<width {
                        let count = Double((y1 - y0) * (ends[x] - starts[x]))
                        for channel in 0..<channels {
                            var sum: Int64 = 0
                            for column in starts[x]..<ends[x] { sum &+= sums[column * channels + channel] }
                            target[(y * width + x) * channels + channel] = Double(sum) / count
                        }
                    }
                }
            }
            initialized = width * height * channels
        }
    }
}
