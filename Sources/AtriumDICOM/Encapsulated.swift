/// Encapsulated pixel data (PS3.5 A.4): the fragments that make up each frame.
enum Encapsulated {
    /// The bytes of each of `count` frames, joined from `fragments`. A single frame is every fragment. Otherwise
    /// each fragment is a frame when the counts match; else the basic offset table says where each frame's first
    /// fragment starts; else, for the JPEG family, a frame starts at each fragment that opens with an SOI marker
    /// (FFD8), as pydicom does. Anything else is refused.
    static func frames(_ fragments: [ArraySlice<UInt8>], offsetTable: ArraySlice<UInt8>, count: Int, jpeg: Bool) throws(PixelError) -> [[UInt8]] {
        guard !fragments.isEmpty else { throw .malformed("encapsulated pixel data has no fragments") }
        if count == 1 { return [fragments.flatMap { $0 }] }
        if fragments.count == count { return fragments.map(Array.init) }
        guard fragments.count > count else {
            throw .malformed("encapsulated pixel data has \(fragments.count) fragments for \(count) frames")
        }
        if let starts = tableStarts(offsetTable, fragments: fragments, count: count) ?? (jpeg ? soiStarts(fragments, count: count) : nil) {
            return zip(starts, starts.dropFirst() + [fragments.count]).map { start, end in fragments[start..<end].flatMap { $0 } }
        }
        throw .malformed("encapsulated pixel data has \(fragments.count) fragments for \(count) frames, and neither its offset table nor its markers say which frame each belongs to")
    }

    /// The index of each frame's first fragment from the basic offset table: `count` little-endian offsets, the
    /// first 0, rising, each at the start of an item (8 bytes of tag and length, then the fragment).
    private static func tableStarts(_ table: ArraySlice<UInt8>, fragments: [ArraySlice<UInt8>], count: Int) -> [Int]? {
        guard table.count == 4 * count else { return nil }
        let bytes = Array(table)
        let offsets = (0..<count).map { index in
            (0..<4).reduce(0) { $0 | Int(bytes[4 * index + $1]) << (8 * $1) }
        }
        var itemStarts: [Int: Int] = [:]
        var position = 0
        for (index, fragment) in fragments.enumerated() {
            itemStarts[position] = index
            position += 8 + fragment.count
        }
        let starts = offsets.compactMap { itemStarts[$0] }
        guard starts.count == count, starts.first == 0, zip(starts, starts.dropFirst()).allSatisfy({ $0 < $1 }) else { return nil }
        return starts
    }

    /// The index of each fragment that opens with a JPEG SOI marker, if the first does and there are `count`.
    private static func soiStarts(_ fragments: [ArraySlice<UInt8>], count: Int) -> [Int]? {
        let starts = fragments.indices.filter { fragments[$0].starts(with: [0xFF, 0xD8]) }
        guard starts.count == count, starts.first == 0 else { return nil }
        return starts
    }
}
