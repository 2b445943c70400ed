import CCharLS

/// JPEG-LS (ISO/IEC 14495-1; PS3.5 A.4.3) through CharLS. Decoding takes lossless (1.2.840.10008.1.2.4.80) and
/// near-lossless (1.2.840.10008.1.2.4.81) frames to `PixelDecoder`'s layout; encoding writes lossless frames.
///
/// JPEG-LS codes unsigned samples of 2 to 16 bits: signed pixels travel masked to Bits Stored, and the decoder
/// sign-extends them again, as it does native pixels.
public enum JPEGLS {
    /// One lossless JPEG-LS codestream (SOI to EOI, even length, as a DICOM fragment needs) for one frame.
    ///
    /// `frame` is one frame as `PixelDecoder.decode` returns it: `layout.bytesPerFrame` bytes of little-endian
    /// samples, colour interleaved (R1 G1 B1 R2 ...) whatever `layout.planarConfiguration` says. Each sample keeps
    /// only its low Bits Stored bits (so signed values go in masked), coded at that precision (at least 2). Colour is
    /// coded sample-interleaved (ILV 2) with no colour transform, so the data set that carries the result says
    /// Planar Configuration 0 and keeps its Photometric Interpretation. Bits Allocated must be 8 or 16.
    public static func encode(_ frame: some Collection<UInt8>, layout: PixelLayout) throws(PixelError) -> [UInt8] {
        guard layout.bitsAllocated == 8 || layout.bitsAllocated == 16 else {
            throw .unsupported("JPEG-LS codes at most 16 bits a sample; Bits Allocated is \(layout.bitsAllocated)")
        }
        guard frame.count == layout.bytesPerFrame else {
            throw .malformed("a frame of \(frame.count) bytes; the layout needs \(layout.bytesPerFrame)")
        }
        let precision = max(2, layout.bitsStored)
        let samples = samplesForCharLS(Array(frame), layout: layout, precision: precision)
        guard let encoder = charls_jpegls_encoder_create() else { throw .unsupported("CharLS could not create an encoder") }
        defer { charls_jpegls_encoder_destroy(encoder) }
        var info = charls_frame_info(
            width: UInt32(layout.columns), height: UInt32(layout.rows), bits_per_sample: Int32(precision),
            component_count: Int32(layout.samplesPerPixel))
        try check(charls_jpegls_encoder_set_frame_info(encoder, &info), "encoding")
        if layout.samplesPerPixel > 1 {
            try check(charls_jpegls_encoder_set_interleave_mode(encoder, CHARLS_INTERLEAVE_MODE_SAMPLE), "encoding")
        }
        try check(charls_jpegls_encoder_set_encoding_options(encoder, CHARLS_ENCODING_OPTIONS_EVEN_DESTINATION_SIZE), "encoding")
        var capacity = 0
        try check(charls_jpegls_encoder_get_estimated_destination_size(encoder, &capacity), "encoding")
        let result = samples.withUnsafeBytes { source in
            Result { () throws(PixelError) -> [UInt8] in
                guard let input = source.baseAddress else { throw .malformed("an empty frame") }
                return try [UInt8](unsafeUninitializedCapacity: capacity) { (output, written) throws(PixelError) in
                    guard let destination = output.baseAddress else { throw .unsupported("CharLS estimated an empty codestream") }
                    try check(charls_jpegls_encoder_set_destination_buffer(encoder, destination, output.count), "encoding")
                    try check(charls_jpegls_encoder_encode_from_buffer(encoder, input, source.count, 0), "encoding")
                    var count = 0
                    try check(charls_jpegls_encoder_get_bytes_written(encoder, &count), "encoding")
                    written = count
                }
            }
        }
        return try result.get()
    }

    /// Every frame of encapsulated JPEG-LS pixel data, decoded and joined: little-endian samples of
    /// `layout.bytesPerSample` bytes, colour interleaved, not yet sign-extended.
    ///
    /// Each frame's JPEG-LS header must agree with the data set (Rows, Columns, Samples per Pixel, a precision no
    /// wider than Bits Allocated) before anything is allocated for it, and must be long enough to code that many
    /// lines: every line of a JPEG-LS scan costs at least one bit (a Golomb code or a run's terminating bit).
    static func decode(_ fragments: [ArraySlice<UInt8>], offsetTable: ArraySlice<UInt8>, layout: PixelLayout) throws(PixelError) -> [UInt8] {
        let frames = try Encapsulated.frames(fragments, offsetTable: offsetTable, count: layout.frames, jpeg: true)
        guard frames.allSatisfy({ $0.count * 8 >= layout.rows }) else {
            throw .malformed("a JPEG-LS frame is too short to code \(layout.rows) lines")
        }
        var output: [UInt8] = []
        output.reserveCapacity(layout.bytesPerFrame * layout.frames)
        for frame in frames { output += try decodeFrame(frame, layout: layout) }
        return output
    }

    /// One codestream to `layout.bytesPerFrame` bytes.
    static func decodeFrame(_ codestream: [UInt8], layout: PixelLayout) throws(PixelError) -> [UInt8] {
        // CharLS 2.4 stops reading scan data at a marker, but at the plain end of its buffer a cut or damaged
        // scan can leave it reading zero bits for about 2^32 iterations (team-charls/charls#334, #434). An EOI
        // after the codestream means it always meets a marker first; after a complete codestream it is not read.
        var codestream = codestream
        codestream += [0xFF, 0xD9]
        guard let decoder = charls_jpegls_decoder_create() else { throw .unsupported("CharLS could not create a decoder") }
        defer { charls_jpegls_decoder_destroy(decoder) }
        let result = codestream.withUnsafeBytes { source in
            Result { () throws(PixelError) -> [UInt8] in
                guard let input = source.baseAddress else { throw .malformed("an empty JPEG-LS frame") }
                try check(charls_jpegls_decoder_set_source_buffer(decoder, input, source.count), "decoding")
                try check(charls_jpegls_decoder_read_header(decoder), "decoding")
                var info = charls_frame_info()
                try check(charls_jpegls_decoder_get_frame_info(decoder, &info), "decoding")
                var interleave = CHARLS_INTERLEAVE_MODE_NONE
                try check(charls_jpegls_decoder_get_interleave_mode(decoder, &interleave), "decoding")
                let width = info.bits_per_sample <= 8 ? 1 : 2
                guard Int(info.width) == layout.columns, Int(info.height) == layout.rows, Int(info.component_count) == layout.samplesPerPixel,
                      Int(info.bits_per_sample) <= layout.bitsAllocated, width <= layout.bytesPerSample
                else {
                    throw .malformed(
                        "the JPEG-LS frame is \(info.width)×\(info.height), \(info.component_count) components of \(info.bits_per_sample) bits; "
                            + "the data set says \(layout.columns)×\(layout.rows), \(layout.samplesPerPixel) of \(layout.bitsAllocated) bits allocated")
                }
                let lines = interleave == CHARLS_INTERLEAVE_MODE_SAMPLE ? layout.rows : layout.rows * layout.samplesPerPixel
                guard source.count * 8 >= lines else { throw .malformed("a JPEG-LS frame of \(source.count) bytes cannot code \(lines) lines") }
                // Not zeroed: a stream that fails early touches only the pages it wrote.
                let size = layout.rows * layout.columns * layout.samplesPerPixel * width
                let decoded = try [UInt8](unsafeUninitializedCapacity: size) { (output, written) throws(PixelError) in
                    guard let destination = output.baseAddress else { throw .malformed("an empty JPEG-LS frame") }
                    try check(charls_jpegls_decoder_decode_to_buffer(decoder, destination, size, 0), "decoding")
                    written = size
                }
                // Without interleaving, CharLS writes each component's plane in turn.
                let planar = layout.samplesPerPixel > 1 && interleave == CHARLS_INTERLEAVE_MODE_NONE
                return toLayout(decoded, width: width, planar: planar, layout: layout)
            }
        }
        return try result.get()
    }

    /// CharLS's samples (native-endian, `width` bytes; planar or interleaved) to `layout`'s little-endian,
    /// interleaved samples of `layout.bytesPerSample` bytes, zero-extended.
    private static func toLayout(_ decoded: [UInt8], width: Int, planar: Bool, layout: PixelLayout) -> [UInt8] {
        var decoded = decoded
        #if _endian(big)
        if width == 2 { PixelDecoder.swapBytes(&decoded, width: 2) }
        #endif
        if planar {
            var single = layout
            single.frames = 1
            single.bitsAllocated = 8 * width
            decoded = PixelDecoder.interleave(decoded, layout: single)
        }
        guard width < layout.bytesPerSample else { return decoded }
        var wide = [UInt8](repeating: 0, count: decoded.count / width * layout.bytesPerSample)
        for sample in 0..<decoded.count / width {
            for byte in 0..<width { wide[sample * layout.bytesPerSample + byte] = decoded[sample * width + byte] }
        }
        return wide
    }

    /// A frame's little-endian samples as CharLS reads them: native-endian, one byte each up to 8 bits of
    /// `precision` and two beyond, masked to Bits Stored.
    private static func samplesForCharLS(_ frame: [UInt8], layout: PixelLayout, precision: Int) -> [UInt8] {
        let width = precision <= 8 ? 1 : 2
        let mask = UInt16(truncatingIfNeeded: (1 << layout.bitsStored) - 1)
        let count = layout.samplesPerFrame
        if width == 1 && layout.bytesPerSample == 1 {
            return mask == 0xFF ? frame : frame.map { $0 & UInt8(truncatingIfNeeded: mask) }
        }
        if width == 1 {
            // 16 bits allocated, at most 8 stored: the low byte of each sample.
            return (0..<count).map { UInt8(truncatingIfNeeded: UInt16(frame[2 * $0]) & mask) }
        }
        let values = [UInt16](unsafeUninitializedCapacity: count) { buffer, initialized in
            frame.withUnsafeBytes { bytes in
                for index in 0..<count {
                    buffer[index] = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self)) & mask
                }
            }
            initialized = count
        }
        return values.withUnsafeBytes(Array.init)
    }

    private static func check(_ status: charls_jpegls_errc, _ what: String) throws(PixelError) {
        guard status != CHARLS_JPEGLS_ERRC_SUCCESS else { return }
        let message = charls_get_error_message(status).map { String(cString: $0) } ?? "error \(status.rawValue)"
        throw .malformed("JPEG-LS \(what) failed: \(message)")
    }
}
