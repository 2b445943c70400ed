import AtriumAPI
import AtriumRuntime
import GRPCCore

private let securityIssue = "the security and gateway issue (#3)"

/// `atrium.v1.SecurityInternal`, for the gateway and the other services (service certificates only).
struct InternalSecurity: Atrium_V1_SecurityInternal.ServiceProtocol {
    let service: SecurityService

    func authorize(
        request: ServerRequest<Atrium_V1_AuthorizeRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_AuthorizeResponse> {
        ServerResponse(message: try service.authorize(request.message))
    }

    func recordUsage(
        request: ServerRequest<Atrium_V1_RecordUsageRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_RecordUsageResponse> {
        throw UnimplementedService.error(context.descriptor, subject: securityIssue)
    }

    func reserveStorage(
        request: ServerRequest<Atrium_V1_ReserveStorageRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ReserveStorageResponse> {
        throw UnimplementedService.error(context.descriptor, subject: securityIssue)
    }

    func settleReservation(
        request: ServerRequest<Atrium_V1_SettleReservationRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_SettleReservationResponse> {
        throw UnimplementedService.error(context.descriptor, subject: securityIssue)
    }

    func appendAudit(
        request: ServerRequest<Atrium_V1_AppendAuditRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_AppendAuditResponse> {
        throw UnimplementedService.error(context.descriptor, subject: securityIssue)
    }

    func lookupSubscribers(
        request: ServerRequest<Atrium_V1_LookupSubscribersRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_LookupSubscribersResponse> {
        throw UnimplementedService.error(context.descriptor, subject: securityIssue)
    }

    func export(
        request: ServerRequest<Atrium_V1_ExportRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Atrium_V1_ExportChunk> {
        throw UnimplementedService.error(context.descriptor, subject: "the backup issue")
    }

    func restore(
        request: StreamingServerRequest<Atrium_V1_RestoreChunk>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_RestoreResponse> {
        throw UnimplementedService.error(context.descriptor, subject: "the backup issue")
    }
}
