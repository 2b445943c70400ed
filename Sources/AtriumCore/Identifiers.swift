/// Server-chosen identifiers: random, URL-safe, lower-case, and prefixed by what they name.
public enum Identifier {
    private static let alphabet: [UInt8] = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)

    /// A new random identifier such as `img_5k3q...` with 128 bits of entropy (26 base32 characters).
    public static func make(prefix: String) -> String {
        "\(prefix)_\(randomBase32(count: 26))"
    }

    /// `count` random lower-case base32 characters (5 bits each) from the system's secure generator, which is
    /// asked for 64 bits at a time (one system call each), not once per character.
    public static func randomBase32(count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        var out: [UInt8] = []
        out.reserveCapacity(count)
        var bits: UInt64 = 0
        var left = 0
        for _ in 0..<count {
            if left < 5 {
                bits = generator.next()
                left = 64
            }
            out.append(alphabet[Int(bits & 31)])
            bits >>= 5
            left -= 5
        }
        return String(decoding: out, as: UTF8.self)
    }
}
