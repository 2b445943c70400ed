/// Server-chosen identifiers: random, URL-safe, lower-case, and prefixed by what they name.
public enum Identifier {
    private static let alphabet: [UInt8] = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)

    /// A new random identifier such as `img_5k3q...` with 128 bits of entropy (26 base32 characters).
    public static func make(prefix: String) -> String {
        "\(prefix)_\(randomBase32(count: 26))"
    }

    /// `count` random lower-case base32 characters (5 bits each) from the system's secure generator.
    public static func randomBase32(count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        var out: [UInt8] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            out.append(alphabet[Int(generator.next(upperBound: UInt8(32)))])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
