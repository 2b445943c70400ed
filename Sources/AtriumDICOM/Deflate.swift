import CZlib

/// Raw deflate streams (no zlib header), as the deflated explicit VR little endian syntax writes them
/// (PS3.5 A.5); the counterpart of ``Inflate``.
enum Deflate {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// `input` compressed as one raw deflate stream (zlib windowBits -15) at `level`, 1 (fastest) to 9 (smallest).
    static func raw(_ input: [UInt8], level: Int32) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        guard deflateInit2_(&stream, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(description: "zlib could not start")
        }
        defer { deflateEnd(&stream) }
        // deflateBound is enough for a single pass; the loop below still grows the buffer should it not be.
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 16)
        var produced = 0
        var consumed = 0
        return try input.withUnsafeBufferPointer { source throws(Failure) -> [UInt8] in
            while true {
                let progress = (consumed, produced)
                // zlib counts in 32 bits: feed at most 1 GiB at a time.
                let chunk = min(source.count - consumed, 1 << 30)
                let last = consumed + chunk == source.count
                stream.next_in = UnsafeMutablePointer(mutating: source.baseAddress.map { $0 + consumed })
                stream.avail_in = UInt32(chunk)
                let status = output.withUnsafeMutableBufferPointer { target -> Int32 in
                    stream.next_out = target.baseAddress.map { $0 + produced }
                    stream.avail_out = UInt32(min(target.count - produced, 1 << 30))
                    let before = stream.avail_out
                    let status = CZlib.deflate(&stream, last ? Z_FINISH : Z_NO_FLUSH)
                    produced += Int(before - stream.avail_out)
                    return status
                }
                consumed += chunk - Int(stream.avail_in)
                switch status {
                case Z_STREAM_END:
                    output.removeLast(output.count - produced)
                    return output
                case Z_OK, Z_BUF_ERROR:
                    if produced == output.count {
                        output += repeatElement(0, count: max(1 << 16, output.count / 2))
                    } else if progress == (consumed, produced) {
                        throw Failure(description: "zlib deflate made no progress (status \(status))")
                    }
                default:
                    throw Failure(description: "zlib deflate failed (status \(status))")
                }
            }
        }
    }
}
