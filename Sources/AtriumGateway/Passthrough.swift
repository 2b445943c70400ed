import GRPCCore
import GRPCNIOTransportHTTP2

/// Hands message bytes from one transport to the other without decoding or copying them.
///
/// Both the gateway's server and its backend clients use `GRPCNIOTransportBytes`, so in practice both
/// directions are casts; the copying fallback exists only for other transports (e.g. in-process tests).
struct PassthroughCoder: MessageSerializer, MessageDeserializer {
    typealias Message = GRPCNIOTransportBytes

    func serialize<Bytes: GRPCContiguousBytes>(_ message: GRPCNIOTransportBytes) throws -> Bytes {
        if let same = message as? Bytes { return same }
        return message.withUnsafeBytes { Bytes($0) }
    }

    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> GRPCNIOTransportBytes {
        if let same = serializedMessageBytes as? GRPCNIOTransportBytes { return same }
        return serializedMessageBytes.withUnsafeBytes { GRPCNIOTransportBytes($0) }
    }
}
