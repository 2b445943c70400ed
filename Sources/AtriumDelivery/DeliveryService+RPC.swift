import AtriumAPI
import AtriumCore
import AtriumRuntime
import GRPCCore

/// `atrium.v1.Delivery`, reached only through the gateway.
struct PublicDelivery: Atrium_V1_Delivery.ServiceProtocol {
    let service: DeliveryService

    func fetch(
        request: ServerRequest<Atrium_V1_FetchRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Atrium_V1_FetchResponse> {
        let caller = try VerifiedCaller.current()
        try service.validate(request.message, caller: caller)
        try await service.checkBudget(request.message, caller: caller)
        return StreamingServerResponse { writer in
            try await service.fetch(request.message, caller: caller, writer: writer)
            return [:]
        }
    }

    func authorizeFetch(
        request: ServerRequest<Atrium_V1_FetchRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_AuthorizeFetchResponse> {
        let caller = try VerifiedCaller.current()
        try service.validate(request.message, caller: caller)
        try await service.checkBudget(request.message, caller: caller)
        return ServerResponse(message: try await service.authorizeFetch(request.message, caller: caller))
    }

    func getAcquisitionConditions(
        request: ServerRequest<Atrium_V1_GetAcquisitionConditionsRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_GetAcquisitionConditionsResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.acquisitionConditions(request.message, caller: caller))
    }

    func submitPrintJob(
        request: ServerRequest<Atrium_V1_SubmitPrintJobRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_PrintJob> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.submitPrintJob(request.message, caller: caller))
    }

    func getPrintJob(
        request: ServerRequest<Atrium_V1_GetPrintJobRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_PrintJob> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.printJob(request.message.jobID, caller: caller))
    }

    func watchPrintJobs(
        request: ServerRequest<Atrium_V1_WatchPrintJobsRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Atrium_V1_PrintJob> {
        let caller = try VerifiedCaller.current()
        return StreamingServerResponse { writer in
            try await service.watchPrintJobs(caller: caller, writer: writer)
            return [:]
        }
    }

    func completePrintJob(
        request: ServerRequest<Atrium_V1_CompletePrintJobRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_PrintJob> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.completePrintJob(request.message, caller: caller))
    }

    func watchInbox(
        request: ServerRequest<Atrium_V1_WatchInboxRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Atrium_V1_InboxEntry> {
        let caller = try VerifiedCaller.current()
        return StreamingServerResponse { writer in
            try await service.watchInbox(request.message, caller: caller, writer: writer)
            return [:]
        }
    }

    func listInbox(
        request: ServerRequest<Atrium_V1_ListInboxRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ListInboxResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.listInbox(request.message, caller: caller))
    }

    func ackInbox(
        request: ServerRequest<Atrium_V1_AckInboxRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_AckInboxResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.ackInbox(request.message, caller: caller))
    }
}

/// `atrium.v1.DeliveryInternal`: processing and the registry put entries in inboxes (service certificates only).
struct InternalDelivery: Atrium_V1_DeliveryInternal.SimpleServiceProtocol {
    let service: DeliveryService

    func deliver(request: Atrium_V1_DeliverRequest, context: ServerContext) async throws -> Atrium_V1_DeliverResponse {
        try await service.deliver(request, from: PeerIdentity.service(of: context)?.rawValue ?? "unknown")
    }
}
