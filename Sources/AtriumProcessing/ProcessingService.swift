import SwiftProtobuf
import AtriumAPI
import AtriumRuntime
import Foundation
public import GRPCCore
import GRPCProtobuf
import Synchronization

/// The processing service. Filters, projections and jobs arrive with the processing issue (#6); until then
/// those RPCs answer UNIMPLEMENTED. What exists now is what the gateway's pool needs: health, and
/// `ProcessingInternal/GetLoad`, which reports this instance's identity, its calls in flight and its
/// capacity.
public struct ProcessingService: Sendable {
    private let instanceID: String
    private let load: LoadCounter

    /// A processing instance named `instanceID` (stable across restarts, e.g. the replica's host name).
    public init(instanceID: String) {
        self.instanceID = instanceID
        self.load = LoadCounter()
    }

    /// Every RPC service the processing process serves.
    public var rpcServices: [any RegistrableRPCService] {
        let subject = "the processing issue (#6)"
        let getLoad = Atrium_V1_ProcessingInternal.Method.GetLoad.descriptor
        return [
            UnimplementedService(methods: Atrium_V1_Processing.Method.descriptors, subject: subject),
            UnimplementedService(methods: Atrium_V1_ProcessingInternal.Method.descriptors.filter { $0 != getLoad }, subject: subject),
            LoadReporter(instanceID: instanceID, load: load),
        ]
    }

    /// Counts calls to the public processing service as in flight.
    public var interceptors: [ConditionalInterceptor<any ServerInterceptor>] {
        [.apply(load, to: .services([Atrium_V1_Processing.descriptor]))]
    }
}

/// Calls being processed now.
final class LoadCounter: ServerInterceptor, Sendable {
    private let inFlight = Atomic<Int>(0)
    private let served = Atomic<Int>(0)

    var current: Int { inFlight.load(ordering: .relaxed) }
    var total: Int { served.load(ordering: .relaxed) }

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        inFlight.add(1, ordering: .relaxed)
        served.add(1, ordering: .relaxed)
        let response: StreamingServerResponse<Output>
        do {
            response = try await next(request, context)
        } catch {
            inFlight.subtract(1, ordering: .relaxed)
            throw error
        }
        // The call is in flight until its response body has been produced, not when the handler returns it.
        guard case .success(var contents) = response.accepted else {
            inFlight.subtract(1, ordering: .relaxed)
            return response
        }
        let producer = contents.producer
        contents.producer = { writer in
            defer { self.inFlight.subtract(1, ordering: .relaxed) }
            return try await producer(writer)
        }
        var wrapped = response
        wrapped.accepted = .success(contents)
        return wrapped
    }
}

/// `ProcessingInternal/GetLoad`.
struct LoadReporter: RegistrableRPCService {
    let instanceID: String
    let load: LoadCounter

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: Atrium_V1_ProcessingInternal.Method.GetLoad.descriptor,
            deserializer: ProtobufDeserializer<Atrium_V1_GetLoadRequest>(),
            serializer: ProtobufSerializer<Atrium_V1_LoadReport>()
        ) { request, context in
            for try await _ in request.messages {}
            let report = Atrium_V1_LoadReport.with {
                $0.instanceID = instanceID
                $0.queueLength = 0
                $0.inFlight = UInt32(clamping: load.current)
                $0.workerCount = UInt32(ProcessInfo.processInfo.activeProcessorCount)
                $0.softwareVersion = "atrium.v1"
                $0.callsServed = UInt64(load.total)
                $0.measuredAt = .init(date: Date())
            }
            return StreamingServerResponse(single: ServerResponse(message: report))
        }
    }
}
