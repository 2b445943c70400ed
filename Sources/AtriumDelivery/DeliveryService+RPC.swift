import AtriumAPI
import AtriumRuntime
import GRPCCore

private let deliveryIssue = "the delivery issue (#5)"

/// `atrium.v1.Delivery`, reached only through the gateway.
struct PublicDelivery: Atrium_V1_Delivery.ServiceProtocol {
    let service: DeliveryService

    func fetch(
        request: ServerRequest<Atrium_V1_FetchRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Atrium_V1_FetchResponse> {
        let caller = try VerifiedCaller(metadata: request.metadata, context: context)
        try service.validate(request.message)
        try await service.checkBudget(request.message, caller: caller)
        return StreamingServerResponse { writer in
            try await service.fetch(request.message, caller: caller, writer: writer)
            return [:]
        }
    }

    func getAcquisitionConditions(
        request: ServerRequest<Atrium_V1_GetAcquisitionConditionsRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_GetAcquisitionConditionsResponse> {
        throw UnimplementedService.error(context.descriptor, subject: deliveryIssue)
    }

    func submitPrintJob(
        request: ServerRequest<Atrium_V1_SubmitPrintJobRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_PrintJob> {
        throw UnimplementedService.error(context.descriptor, subject: deliveryIssue)
    }

    func getPrintJob(
        request: ServerRequest<Atrium_V1_GetPrintJobRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_PrintJob> {
        throw UnimplementedService.error(context.descriptor, subject: deliveryIssue)
    }

    func watchPrintJobs(
        request: ServerRequest<Atrium_V1_WatchPrintJobsRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Atrium_V1_PrintJob> {
        throw UnimplementedService.error(context.descriptor, subject: deliveryIssue)
    }

    func completePrintJob(
        request: ServerRequest<Atrium_V1_CompletePrintJobRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_PrintJob> {
        throw UnimplementedService.error(context.descriptor, subject: deliveryIssue)
    }

    func watchInbox(
        request: ServerRequest<Atrium_V1_WatchInboxRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Atrium_V1_InboxEntry> {
        throw UnimplementedService.error(context.descriptor, subject: deliveryIssue)
    }

    func listInbox(
        request: ServerRequest<Atrium_V1_ListInboxRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ListInboxResponse> {
        throw UnimplementedService.error(context.descriptor, subject: deliveryIssue)
    }

    func ackInbox(
        request: ServerRequest<Atrium_V1_AckInboxRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_AckInboxResponse> {
        throw UnimplementedService.error(context.descriptor, subject: deliveryIssue)
    }
}
