/// The VR of each public tag, for implicit VR syntaxes and for re-reading `UN` elements.
public enum DataDictionary {
    private static let table: [UInt32: VR] = {
        var table: [UInt32: VR] = [:]
        table.reserveCapacity(5200)
        for chunk in records {
            chunk.withUTF8Buffer { bytes in
                var index = 0
                while index + 10 <= bytes.count {
                    var tag: UInt32 = 0
                    for offset in 0..<8 {
                        let c = bytes[index + offset]
                        let digit: UInt32 = c <= 57 ? UInt32(c - 48) : UInt32(c - 55)
                        tag = tag << 4 | digit
                    }
                    if let vr = VR(bytes: bytes[index + 8], bytes[index + 9]) { table[tag] = vr }
                    index += 10
                }
            }
        }
        return table
    }()

    /// The VR of `tag`: group lengths are UL, private creators LO, unknown tags `nil`.
    public static func vr(for tag: DICOMTag) -> VR? {
        if tag.element == 0 { return .UL }
        if tag.isPrivate {
            return (0x0010...0x00FF).contains(tag.element) ? .LO : nil
        }
        return table[tag.value]
    }
}
