public import GRPCCore

/// Passes message bytes through untouched: the gateway forwards them, and stubs never decode them.
public struct RawBytesCoder: MessageSerializer, MessageDeserializer, Sendable {
    public typealias Message = [UInt8]

    /// The coder.
    public init() {}

    public func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes {
        Bytes(message)
    }

    public func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}

/// Answers every method of a service that a later issue implements with UNIMPLEMENTED, naming that issue.
///
/// No stub returns data: a caller learns at once what is missing and where it will come from.
public struct UnimplementedService: RegistrableRPCService {
    private let methods: [MethodDescriptor]
    private let subject: String

    /// Stubs for `methods`; `subject` names the work that delivers them, e.g. "the registry issue (#4)".
    public init(methods: [MethodDescriptor], subject: String) {
        self.methods = methods
        self.subject = subject
    }

    public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        for method in methods {
            let message = Self.message(for: method, subject: subject)
            router.registerHandler(forMethod: method, deserializer: RawBytesCoder(), serializer: RawBytesCoder()) { _, _ in
                throw RPCError(code: .unimplemented, message: message)
            }
        }
    }

    /// The error a stub throws for `method`.
    public static func error(_ method: MethodDescriptor, subject: String) -> RPCError {
        RPCError(code: .unimplemented, message: message(for: method, subject: subject))
    }

    private static func message(for method: MethodDescriptor, subject: String) -> String {
        "\(method.fullyQualifiedMethod) is not implemented yet; it arrives with \(subject)"
    }
}
