import AtriumCore
import Crypto
import Foundation

/// An API key in its three parts: `atr_<prefix>_<secret>`.
///
/// The prefix (12 base32 characters) is public: it names the key in listings and is the lookup key. The
/// secret (32 base32 characters, 160 bits) is shown once at creation; Atrium stores only
/// `HMAC-SHA256(salt, secret)` with a random 16-byte salt per key.
struct ApiKeySecret: Sendable, Hashable {
    let prefix: String
    let secret: String

    /// The whole key as the caller presents it.
    var text: String { "atr_\(prefix)_\(secret)" }

    /// A new random key.
    static func generate() -> ApiKeySecret {
        ApiKeySecret(prefix: Identifier.randomBase32(count: 12), secret: Identifier.randomBase32(count: 32))
    }

    /// Parses a presented key; `nil` when it is not of the form `atr_<12>_<32>`.
    init?(parsing text: String) {
        let parts = text.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "atr", parts[1].utf8.count == 12, parts[2].utf8.count == 32 else { return nil }
        self.prefix = String(parts[1])
        self.secret = String(parts[2])
    }

    private init(prefix: String, secret: String) {
        self.prefix = prefix
        self.secret = secret
    }

    /// `HMAC-SHA256(salt, secret)`.
    func hash(salt: Data) -> Data {
        let mac = HMAC<SHA256>.authenticationCode(for: Data(secret.utf8), using: SymmetricKey(data: salt))
        return Data(mac)
    }

    /// Whether this key's secret matches a stored salt and hash, compared in constant time.
    func matches(salt: Data, hash stored: Data) -> Bool {
        let computed = hash(salt: salt)
        guard computed.count == stored.count else { return false }
        var difference: UInt8 = 0
        for (a, b) in zip(computed, stored) { difference |= a ^ b }
        return difference == 0
    }

    /// A new random salt.
    static func makeSalt() -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }
}
