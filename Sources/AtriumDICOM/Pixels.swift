/// Why pixels cannot be decoded.
public struct PixelError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The transfer syntax is stored and delivered but not decoded here (the message names it).
    public let unsupported: Bool
    /// What cannot be decoded, naming the attribute or transfer syntax at fault.
    public let description: String

    static func unsupported(_ what: String) -> Self { Self(unsupported: true, description: what) }
    static func malformed(_ what: String) -> Self { Self(unsupported: false, description: what) }
}

/// The image pixel module (group 0028) of a data set, validated.
public struct PixelLayout: Sendable, Equatable {
    /// Rows (0028,0010): the image height in pixels, 1 to 65535.
    public var rows: Int
    /// Columns (0028,0011): the image width in pixels, 1 to 65535.
    public var columns: Int
    /// Samples per Pixel (0028,0002): 1 (monochrome or palette) or 3 (colour); 1 when absent.
    public var samplesPerPixel: Int
    /// Bits Allocated (0028,0100): 8, 16 or 32 bits per sample.
    public var bitsAllocated: Int
    /// Bits Stored (0028,0101), 1 to ``bitsAllocated``; ``bitsAllocated`` when absent.
    public var bitsStored: Int
    /// Whether samples are two's complement: Pixel Representation (0028,0103) is 1.
    public var signed: Bool
    /// Photometric Interpretation (0028,0004), e.g. `MONOCHROME2`; when absent, `MONOCHROME2` for one
    /// sample per pixel and `RGB` for three.
    public var photometricInterpretation: String
    /// 0: interleaved (R1 G1 B1 R2 ...); 1: planar (all R, all G, all B), per frame.
    public var planarConfiguration: Int
    /// Number of Frames (0028,0008), 1 to 100000; 1 when absent.
    public var frames: Int

    /// Bytes per sample.
    public var bytesPerSample: Int { bitsAllocated / 8 }
    /// Samples in one frame.
    public var samplesPerFrame: Int { rows * columns * samplesPerPixel }
    /// Bytes of one frame.
    public var bytesPerFrame: Int { samplesPerFrame * bytesPerSample }

    /// The layout described by `dataset`; a problem names the attribute.
    public init(_ dataset: DataSet) throws(PixelError) {
        guard let rows = dataset.integer(.rows), let columns = dataset.integer(.columns), (1...65535).contains(rows), (1...65535).contains(columns) else {
            throw .malformed("Rows (0028,0010) and Columns (0028,0011) must be 1 to 65535")
        }
        let samples = dataset.integer(.samplesPerPixel) ?? 1
        guard samples == 1 || samples == 3 else { throw .malformed("Samples per Pixel (0028,0002) must be 1 or 3, not \(samples)") }
        guard let allocated = dataset.integer(.bitsAllocated), [8, 16, 32].contains(allocated) else {
            throw .unsupported("Bits Allocated (0028,0100) other than 8, 16 or 32")
        }
        let stored = dataset.integer(.bitsStored) ?? allocated
        guard (1...allocated).contains(stored) else { throw .malformed("Bits Stored (0028,0101) must be 1 to Bits Allocated") }
        let frames = dataset.integer(.numberOfFrames) ?? 1
        guard (1...100_000).contains(frames) else { throw .malformed("Number of Frames (0028,0008) must be 1 to 100000") }
        self.rows = rows
        self.columns = columns
        self.samplesPerPixel = samples
        self.bitsAllocated = allocated
        self.bitsStored = stored
        self.signed = dataset.integer(.pixelRepresentation) == 1
        self.photometricInterpretation = dataset.string(.photometricInterpretation) ?? (samples == 1 ? "MONOCHROME2" : "RGB")
        self.planarConfiguration = samples > 1 ? (dataset.integer(.planarConfiguration) ?? 0) : 0
        self.frames = frames
        guard Int64(rows) * Int64(columns) * Int64(samples) * Int64(allocated / 8) * Int64(frames) <= 1 << 32 else {
            throw .malformed("the pixel data described is larger than 4 GiB")
        }
    }
}

/// Decodes pixel data to one layout: little-endian samples, interleaved, frames one after another, with
/// signed values sign-extended from Bits Stored. This is what pydicom's `pixel_array` holds.
public enum PixelDecoder {
    /// The decoded pixels of `file`, and their layout.
    public static func decode(_ file: DICOMFile) throws(PixelError) -> (layout: PixelLayout, bytes: [UInt8]) {
        let layout = try PixelLayout(file.dataset)
        guard let element = file.dataset[.pixelData] else { throw .malformed("no Pixel Data (7FE0,0010)") }
        var output: [UInt8]
        var planar = layout.planarConfiguration == 1
        switch element.value {
        case .bytes(let stored):
            guard !file.transferSyntax.encapsulated else { throw .malformed("native pixel data in an encapsulated transfer syntax") }
            let needed = layout.bytesPerFrame * layout.frames
            guard stored.count >= needed else { throw .malformed("Pixel Data holds \(stored.count) bytes; the image needs \(needed)") }
            output = Array(stored.prefix(needed))
            // Big endian: each sample is reversed; 8-bit samples in an OW element are stored as swapped 16-bit words.
            let width = max(layout.bytesPerSample, element.vr == .OW ? 2 : 1)
            if !file.dataset.littleEndian && width > 1 { swapBytes(&output, width: width) }
        case .fragments(let offsetTable, let fragments):
            switch file.transferSyntax.uid {
            case TransferSyntax.rleLossless:
                output = try RLE.decode(fragments, layout: layout)
            case TransferSyntax.jpegLSLossless, TransferSyntax.jpegLSNearLossless:
                output = try JPEGLS.decode(fragments, offsetTable: offsetTable, layout: layout)
                // The codestream says how colour is interleaved, and the decoder always interleaves it.
                planar = false
            default:
                throw .unsupported("pixels in \(file.transferSyntax.displayName) are stored and delivered but not decoded here")
            }
        case .sequence:
            throw .malformed("Pixel Data is a sequence")
        }
        if planar { output = interleave(output, layout: layout) }
        if layout.signed && layout.bitsStored < layout.bitsAllocated { signExtend(&output, layout: layout) }
        return (layout, output)
    }

    /// Reverses the bytes of each `width`-byte number in `range` (all of `bytes` when nil); a partial number at
    /// the end is left as it is.
    static func swapBytes(_ bytes: inout [UInt8], width: Int, in range: Range<Int>? = nil) {
        let range = range ?? bytes.indices
        bytes.withUnsafeMutableBufferPointer { buffer in
            var index = range.lowerBound
            while index + width <= range.upperBound {
                var low = index, high = index + width - 1
                while low < high {
                    buffer.swapAt(low, high)
                    low += 1
                    high -= 1
                }
                index += width
            }
        }
    }

    /// Planar (RRR…GGG…BBB…) to interleaved (RGBRGB…), frame by frame.
    static func interleave(_ planar: [UInt8], layout: PixelLayout) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: planar.count)
        let pixels = layout.rows * layout.columns
        let width = layout.bytesPerSample
        for frame in 0..<layout.frames {
            let base = frame * layout.bytesPerFrame
            for sample in 0..<layout.samplesPerPixel {
                for pixel in 0..<pixels {
                    let from = base + (sample * pixels + pixel) * width
                    let to = base + (pixel * layout.samplesPerPixel + sample) * width
                    for byte in 0..<width { out[to + byte] = planar[from + byte] }
                }
            }
        }
        return out
    }

    /// Sign-extends each little-endian sample from Bits Stored to Bits Allocated.
    static func signExtend(_ bytes: inout [UInt8], layout: PixelLayout) {
        let width = layout.bytesPerSample
        let shift = UInt64(layout.bitsAllocated - layout.bitsStored)
        var index = 0
        while index + width <= bytes.count {
            var value: UInt64 = 0
            for byte in (0..<width).reversed() { value = value << 8 | UInt64(bytes[index + byte]) }
            let bits = UInt64(layout.bitsAllocated)
            let extended = UInt64(bitPattern: Int64(bitPattern: value << (64 - bits + shift)) >> Int64(64 - bits + shift))
            for byte in 0..<width { bytes[index + byte] = UInt8(truncatingIfNeeded: extended >> UInt64(8 * byte)) }
            index += width
        }
    }
}

/// RLE Lossless (PS3.5 Annex G): per frame, a 64-byte header of segment offsets, then one PackBits-coded
/// segment per byte of each sample, most significant byte first.
enum RLE {
    static func decode(_ fragments: [ArraySlice<UInt8>], layout: PixelLayout) throws(PixelError) -> [UInt8] {
        // One frame per fragment is the norm; a single frame may span several fragments.
        let frames: [[UInt8]] = layout.frames == 1 ? [fragments.flatMap { $0 }] : fragments.map(Array.init)
        guard frames.count == layout.frames else {
            throw .malformed("RLE pixel data has \(frames.count) fragments for \(layout.frames) frames")
        }
        // PackBits expands at most 64-fold (2 bytes for a run of 128), so data far shorter than the image
        // claims is refused before anything is allocated for it.
        let compressed = frames.reduce(0) { $0 + $1.count }
        guard layout.bytesPerFrame / 64 <= compressed / layout.frames else {
            throw .malformed("RLE pixel data of \(compressed) bytes cannot hold \(layout.frames) frames of \(layout.bytesPerFrame) bytes")
        }
        var output: [UInt8] = []
        output.reserveCapacity(layout.bytesPerFrame * layout.frames)
        let segmentsPerFrame = layout.samplesPerPixel * layout.bytesPerSample
        let pixels = layout.rows * layout.columns
        for frame in frames {
            guard frame.count >= 64 else { throw .malformed("an RLE frame is shorter than its 64-byte header") }
            let count = Int(word(frame, 0))
            guard count == segmentsPerFrame else { throw .malformed("an RLE frame has \(count) segments; the image needs \(segmentsPerFrame)") }
            var offsets = (0..<count).map { Int(word(frame, 4 + 4 * $0)) }
            offsets.append(frame.count)
            var planes: [[UInt8]] = []
            for segment in 0..<count {
                let start = offsets[segment], end = offsets[segment + 1]
                guard start >= 64, start <= end, end <= frame.count else { throw .malformed("RLE segment \(segment) has offsets outside its frame") }
                planes.append(try packBits(frame[start..<end], expected: pixels))
            }
            // Segments are sample-major, most significant byte first; output is interleaved little-endian.
            var frameBytes = [UInt8](repeating: 0, count: layout.bytesPerFrame)
            let width = layout.bytesPerSample
            for sample in 0..<layout.samplesPerPixel {
                for byte in 0..<width {
                    let plane = planes[sample * width + byte]
                    let littleEndianByte = width - 1 - byte
                    for pixel in 0..<pixels {
                        frameBytes[(pixel * layout.samplesPerPixel + sample) * width + littleEndianByte] = plane[pixel]
                    }
                }
            }
            output += frameBytes
        }
        return output
    }

    private static func word(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }

    /// PackBits: n in 0...127 copies n+1 literal bytes; n in -127...-1 repeats the next byte 1-n times; -128 is a no-op.
    private static func packBits(_ input: ArraySlice<UInt8>, expected: Int) throws(PixelError) -> [UInt8] {
        guard expected <= input.count * 64 else {
            throw .malformed("an RLE segment of \(input.count) bytes cannot decode to \(expected)")
        }
        var out: [UInt8] = []
        out.reserveCapacity(expected)
        var index = input.startIndex
        while index < input.endIndex, out.count < expected {
            let header = Int8(bitPattern: input[index])
            index += 1
            if header >= 0 {
                let count = Int(header) + 1
                guard count <= input.endIndex - index else { throw .malformed("an RLE literal run passes the end of its segment") }
                out += input[index..<index + count]
                index += count
            } else if header != -128 {
                guard index < input.endIndex else { throw .malformed("an RLE repeat run has no byte to repeat") }
                out += repeatElement(input[index], count: 1 - Int(header))
                index += 1
            }
        }
        guard out.count >= expected else { throw .malformed("an RLE segment decodes to \(out.count) bytes; the image needs \(expected)") }
        return Array(out.prefix(expected))
    }
}
