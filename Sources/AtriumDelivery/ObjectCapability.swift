import AtriumCore
import Crypto
import Foundation

/// What a byte-path URL lets its holder read: one stored object (an original in the registry's blob store, or a
/// variant in delivery's), until an instant. It names the subscriber, image, encoding and fetch ID it was issued
/// for, so it cannot be retargeted, and the data plane logs them with each read.
///
/// The token is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`, with a key that exists only in the
/// delivery process's memory (a restart invalidates every outstanding capability; clients ask again). The
/// payload is binary: version 1, expiry (Unix ms), store, size, the 32-byte SHA-256, the encoding, then the
/// subscriber ID, fetch ID and image ID, each with a 16-bit length.
struct ObjectCapability: Sendable, Equatable {
    enum Store: UInt8, Sendable {
        case original = 0
        case variant = 1
    }

    var expiresUnixMilliseconds: UInt64
    var store: Store
    var size: UInt64
    /// Lower-case hex, 64 characters.
    var sha256: String
    var encoding: Int32
    var subscriberID: String
    var fetchID: String
    var imageID: String

    /// The expiry as a date.
    var expires: Date { Date(timeIntervalSince1970: Double(expiresUnixMilliseconds) / 1000) }
}

/// Seals and opens ``ObjectCapability`` tokens with a key made at start-up.
struct CapabilitySealer: Sendable {
    private let key: SymmetricKey

    init(key: SymmetricKey = SymmetricKey(size: .bits256)) { self.key = key }

    func seal(_ capability: ObjectCapability) -> String {
        var payload: [UInt8] = [1]
        payload.reserveCapacity(128)
        Self.append(capability.expiresUnixMilliseconds, to: &payload)
        payload.append(capability.store.rawValue)
        Self.append(capability.size, to: &payload)
        payload += Hex.decode(capability.sha256) ?? []
        Self.append(UInt64(UInt32(bitPattern: capability.encoding)), to: &payload)
        for text in [capability.subscriberID, capability.fetchID, capability.imageID] {
            let utf8 = Array(text.utf8.prefix(Int(UInt16.max)))
            payload.append(UInt8(utf8.count >> 8))
            payload.append(UInt8(utf8.count & 0xff))
            payload += utf8
        }
        let mac = HMAC<SHA256>.authenticationCode(for: payload, using: key)
        return Self.base64URL(payload) + "." + Self.base64URL(Array(mac))
    }

    enum Refusal: Error, Equatable {
        /// Not a token this process issued (malformed, forged, or from before a restart).
        case invalid
        /// Issued here, but past its expiry.
        case expired
    }

    /// The capability in `token`, if this process sealed it and it has not expired at `now`.
    func open(_ token: Substring, now: Date = Date()) throws(Refusal) -> ObjectCapability {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let payload = Self.data(base64URL: parts[0]), let mac = Self.data(base64URL: parts[1]) else {
            throw .invalid
        }
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: payload, using: key) else { throw .invalid }
        var reader = Reader(bytes: [UInt8](payload))
        guard reader.byte() == 1,
            let expires = reader.integer(),
            let store = reader.byte().flatMap(ObjectCapability.Store.init(rawValue:)),
            let size = reader.integer(),
            let digest = reader.take(32),
            let encoding = reader.integer(),
            let subscriberID = reader.text(),
            let fetchID = reader.text(),
            let imageID = reader.text(),
            reader.atEnd
        else { throw .invalid }
        let capability = ObjectCapability(
            expiresUnixMilliseconds: expires,
            store: store,
            size: size,
            sha256: Hex.encode(digest),
            encoding: Int32(bitPattern: UInt32(truncatingIfNeeded: encoding)),
            subscriberID: subscriberID,
            fetchID: fetchID,
            imageID: imageID
        )
        guard UInt64(max(0, now.timeIntervalSince1970 * 1000)) < expires else { throw .expired }
        return capability
    }

    private struct Reader {
        let bytes: [UInt8]
        var position = 0
        var atEnd: Bool { position == bytes.count }

        mutating func take(_ count: Int) -> ArraySlice<UInt8>? {
            guard count >= 0, bytes.count - position >= count else { return nil }
            defer { position += count }
            return bytes[position..<position + count]
        }

        mutating func byte() -> UInt8? { take(1)?.first }

        mutating func integer() -> UInt64? {
            take(8)?.reduce(0) { $0 << 8 | UInt64($1) }
        }

        mutating func text() -> String? {
            guard let length = take(2) else { return nil }
            return take(Int(length.first!) << 8 | Int(length.last!)).map { String(decoding: $0, as: UTF8.self) }
        }
    }

    private static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// Base64url without padding (RFC 4648 §5).
    static func base64URL<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        let input = Array(bytes)
        var out: [UInt8] = []
        out.reserveCapacity((input.count * 4 + 2) / 3)
        var index = 0
        while index + 3 <= input.count {
            let value = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8 | UInt32(input[index + 2])
            for shift in [18, 12, 6, 0] { out.append(alphabet[Int(value >> UInt32(shift) & 63)]) }
            index += 3
        }
        let rest = input.count - index
        if rest > 0 {
            let value = UInt32(input[index]) << 16 | (rest == 2 ? UInt32(input[index + 1]) << 8 : 0)
            out.append(alphabet[Int(value >> 18 & 63)])
            out.append(alphabet[Int(value >> 12 & 63)])
            if rest == 2 { out.append(alphabet[Int(value >> 6 & 63)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func data(base64URL text: Substring) -> Data? {
        guard text.utf8.count <= 4096 else { return nil }
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        standard += String(repeating: "=", count: (4 - standard.utf8.count % 4) % 4)
        return Data(base64Encoded: standard)
    }
}
