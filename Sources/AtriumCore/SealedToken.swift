public import Crypto
public import Foundation

/// Seals a binary payload into a URL-safe token that only this process can have made, and opens such tokens:
/// `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`, with a key made at start-up that exists only
/// in this process's memory (a restart invalidates every token it issued). The data planes' capabilities are
/// such tokens (``TokenWriter`` builds a payload, ``TokenReader`` reads one back).
public struct TokenSealer: Sendable {
    private let key: SymmetricKey

    public init(key: SymmetricKey = SymmetricKey(size: .bits256)) { self.key = key }

    /// The token for `payload`.
    public func seal(_ payload: [UInt8]) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: payload, using: key)
        return Self.base64URL(payload) + "." + Self.base64URL(Array(mac))
    }

    /// The payload of `token`, or `nil` when this key did not seal it (malformed, forged, or from before a restart).
    public func open(_ token: Substring) -> [UInt8]? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let payload = Self.data(base64URL: parts[0]), let mac = Self.data(base64URL: parts[1]) else {
            return nil
        }
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: payload, using: key) else { return nil }
        return [UInt8](payload)
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// Base64url without padding (RFC 4648 §5).
    public static func base64URL<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
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

    /// The bytes of base64url text (at most 4096 characters), padded or not.
    public static func data(base64URL text: Substring) -> Data? {
        guard text.utf8.count <= 4096 else { return nil }
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        standard += String(repeating: "=", count: (4 - standard.utf8.count % 4) % 4)
        return Data(base64Encoded: standard)
    }
}

/// Builds a token payload: big-endian integers, bytes, and texts with a 16-bit length.
public struct TokenWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(version: UInt8) {
        bytes = [version]
        bytes.reserveCapacity(128)
    }

    public mutating func append(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    public mutating func append(byte: UInt8) { bytes.append(byte) }

    public mutating func append<Bytes: Collection<UInt8>>(raw: Bytes) { bytes += raw }

    /// A text of at most 65535 UTF-8 bytes (longer is cut), or any bytes, with a 16-bit length.
    public mutating func append<Bytes: Collection<UInt8>>(counted: Bytes) {
        let data = Array(counted.prefix(Int(UInt16.max)))
        bytes.append(UInt8(data.count >> 8))
        bytes.append(UInt8(data.count & 0xff))
        bytes += data
    }

    public mutating func append(text: String) { append(counted: text.utf8) }
}

/// Reads a payload ``TokenWriter`` built; every read is `nil` past the end.
public struct TokenReader: Sendable {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Whether every byte was read.
    public var atEnd: Bool { position == bytes.count }

    public mutating func take(_ count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, bytes.count - position >= count else { return nil }
        defer { position += count }
        return bytes[position..<position + count]
    }

    public mutating func byte() -> UInt8? { take(1)?.first }

    public mutating func integer() -> UInt64? {
        take(8)?.reduce(0) { $0 << 8 | UInt64($1) }
    }

    public mutating func counted() -> ArraySlice<UInt8>? {
        guard let length = take(2) else { return nil }
        return take(Int(length.first!) << 8 | Int(length.last!))
    }

    public mutating func text() -> String? {
        counted().map { String(decoding: $0, as: UTF8.self) }
    }
}
