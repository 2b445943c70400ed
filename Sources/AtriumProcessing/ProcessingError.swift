public import AtriumRuntime

/// Errors of processing, each mapped to the status the caller sees (see ``ServiceError``). Underlying causes go to
/// the log.
public typealias ProcessingError = ServiceError<ProcessingErrors>

/// The processing service's errors: the generic factories of ``ServiceError`` name every refusal of processing,
/// whose messages say which input, field or job.
public enum ProcessingErrors: ServiceErrorDomain {
    public static let service = "processing"
}
