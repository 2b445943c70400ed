public import AtriumRuntime
import GRPCCore

/// Errors of processing, each mapped to the status the caller sees (see ``ServiceError``). Underlying causes go to
/// the log.
public typealias ProcessingError = ServiceError<ProcessingErrors>

/// The processing service's errors: the generic factories of ``ServiceError`` name every refusal of processing,
/// whose messages say which input, field or job.
public enum ProcessingErrors: ServiceErrorDomain {
    public static let service = "processing"
}

extension ServiceError where Domain == ProcessingErrors {
    /// The status an engine error gives the caller: INVALID_ARGUMENT for an unusable operation or input,
    /// INTERNAL for a failure of the engine; the file and line stay the engine's.
    init(_ error: EngineError) {
        self.init(error.kind == .invalidInput ? .invalidArgument : .internalError, error.message, file: error.file, line: error.line)
    }
}

/// An engine error that reaches the server unconverted (thrown from work offloaded inside a run) answers with the
/// same status as ``ProcessingError/init(_:)-(EngineError)``.
extension EngineError: RPCErrorConvertible {
    var rpcErrorCode: RPCError.Code { ProcessingError(self).code }
    var rpcErrorMessage: String { message }
}

/// Runs an engine step where the service needs a ``ProcessingError``: its error becomes the caller's status.
func engineStep<T>(_ body: () throws(EngineError) -> T) throws(ProcessingError) -> T {
    do {
        return try body()
    } catch {
        throw ProcessingError(error)
    }
}
