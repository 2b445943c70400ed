import CZlib

/// Raw deflate streams (no zlib header), as the deflated explicit VR little endian syntax uses.
enum Inflate {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Inflates a raw deflate stream; refuses output larger than `limit` bytes (a deflate bomb).
    static func raw(_ input: ArraySlice<UInt8>, limit: Int = 1 << 31) throws -> [UInt8] {
        try inflate(input, windowBits: -15, limit: limit)
    }

    /// Inflates a zlib stream (with its header), as PNG's IDAT holds.
    static func zlib(_ input: [UInt8], limit: Int = 1 << 31) throws -> [UInt8] {
        try inflate(input[...], windowBits: 15, limit: limit)
    }

    private static func inflate(_ input: ArraySlice<UInt8>, windowBits: Int32, limit: Int) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, windowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(description: "zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var input = Array(input)
        let inputCount = input.count
        return try input.withUnsafeMutableBufferPointer { source throws -> [UInt8] in
            stream.next_in = source.baseAddress
            stream.avail_in = UInt32(inputCount)
            while true {
                let status = chunk.withUnsafeMutableBufferPointer { buffer -> Int32 in
                    stream.next_out = buffer.baseAddress
                    stream.avail_out = UInt32(buffer.count)
                    return CZlib.inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                output.append(contentsOf: chunk[0..<produced])
                guard output.count <= limit else { throw Failure(description: "inflates to more than \(limit) bytes") }
                switch status {
                case Z_STREAM_END:
                    return output
                case Z_OK:
                    if stream.avail_in == 0 && produced == 0 { throw Failure(description: "the stream ends early") }
                case Z_BUF_ERROR:
                    if stream.avail_in == 0 { throw Failure(description: "the stream ends early") }
                default:
                    throw Failure(description: "corrupt deflate data (zlib status \(status))")
                }
            }
        }
    }
}
