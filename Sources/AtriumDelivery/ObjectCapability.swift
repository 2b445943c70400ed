import AtriumCore
import Foundation

/// What a byte-path URL lets its holder read: one stored object (an original in the registry's blob store, or a
/// variant in delivery's), until an instant. It names the subscriber, image, encoding and fetch ID it was issued
/// for, so it cannot be retargeted, and the data plane logs them with each read.
///
/// The token is sealed by ``TokenSealer`` with a key that exists only in the delivery process's memory (a restart
/// invalidates every outstanding capability; clients ask again). The payload is binary: version 1, expiry (Unix ms), store, size, the 32-byte SHA-256, the encoding, then the
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

/// Seals and opens ``ObjectCapability`` tokens with a key made at start-up (``TokenSealer``).
struct CapabilitySealer: Sendable {
    private let tokens = TokenSealer()

    func seal(_ capability: ObjectCapability) -> String {
        var payload = TokenWriter(version: 1)
        payload.append(capability.expiresUnixMilliseconds)
        payload.append(byte: capability.store.rawValue)
        payload.append(capability.size)
        payload.append(raw: Hex.decode(capability.sha256) ?? [])
        payload.append(UInt64(UInt32(bitPattern: capability.encoding)))
        for text in [capability.subscriberID, capability.fetchID, capability.imageID] { payload.append(text: text) }
        return tokens.seal(payload.bytes)
    }

    enum Refusal: Error, Equatable {
        /// Not a token this process issued (malformed, forged, or from before a restart).
        case invalid
        /// Issued here, but past its expiry.
        case expired
    }

    /// The capability in `token`, if this process sealed it and it has not expired at `now`.
    func open(_ token: Substring, now: Date = Date()) throws(Refusal) -> ObjectCapability {
        guard let payload = tokens.open(token) else { throw .invalid }
        var reader = TokenReader(payload)
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
}
