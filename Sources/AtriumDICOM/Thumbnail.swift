/// 8-bit PNG thumbnails of the first frame: the longest edge scaled down to `maximumEdge` (box average), grey
/// images windowed by the object's window centre/width after its rescale (else stretched from min to max),
/// MONOCHROME1 inverted, RGB kept. PNG is written with zlib; no imaging library.
public enum Thumbnail {
    /// A PNG of `file`'s first frame.
    public static func png(of file: DICOMFile, maximumEdge: Int = 128) throws(PixelError) -> [UInt8] {
        let (layout, values) = try Rendering.firstFrame(of: file, for: "thumbnails")
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
        let pixels =
            channels == 3
            ? Rendering.rgbLevels(small, bitsStored: layout.bitsStored)
            : Rendering.greyLevels(small, dataset: file.dataset, photometric: layout.photometricInterpretation)
        return Rendering.encodePNG(pixels, width: width, height: height, channels: channels)
    }
}
