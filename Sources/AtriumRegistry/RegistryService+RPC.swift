import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import AtriumStorage
import GRPCCore

/// `atrium.v1.Registry`, the public face, reached only through the gateway.
struct PublicRegistry: Atrium_V1_Registry.ServiceProtocol {
    let service: RegistryService

    func register(
        request: StreamingServerRequest<Atrium_V1_RegisterRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_RegisterResponse> {
        let caller = try VerifiedCaller.current()
        var messages = request.messages.makeAsyncIterator()
        guard let first = try await messages.next(), case .header(let header)? = first.part else {
            throw RegistryError.invalidArgument("the first message of Register must be a header")
        }
        let response = try await service.register(registrant: caller, header: header) {
            guard let message = try await messages.next() else { return nil }
            if case .chunk(let chunk)? = message.part { return .chunk(chunk) }
            return .unexpected
        }
        return ServerResponse(message: response)
    }

    func authorizeUpload(
        request: ServerRequest<Atrium_V1_AuthorizeUploadRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_AuthorizeUploadResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try service.authorizeUpload(request.message, caller: caller))
    }

    func getImage(
        request: ServerRequest<Atrium_V1_GetImageRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ImageRecord> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try service.getImage(request.message, caller: caller))
    }

    func setAcquisitionConditions(
        request: ServerRequest<Atrium_V1_SetAcquisitionConditionsRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_SetAcquisitionConditionsResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.setConditions(request.message, caller: caller))
    }

    func listImages(
        request: ServerRequest<Atrium_V1_ListImagesRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ListImagesResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try service.listImages(request.message, caller: caller))
    }

    func listStudies(
        request: ServerRequest<Atrium_V1_ListStudiesRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ListStudiesResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try service.listStudies(request.message, caller: caller))
    }

    func listSeries(
        request: ServerRequest<Atrium_V1_ListSeriesRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ListSeriesResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try service.listSeries(request.message, caller: caller))
    }

    func getThumbnail(
        request: ServerRequest<Atrium_V1_GetThumbnailRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_Thumbnail> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try service.thumbnail(request.message, caller: caller))
    }

    func grantShare(
        request: ServerRequest<Atrium_V1_GrantShareRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ShareGrant> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.grantShare(request.message, caller: caller))
    }

    func revokeShare(
        request: ServerRequest<Atrium_V1_RevokeShareRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_RevokeShareResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.revokeShare(request.message, caller: caller))
    }

    func listShares(
        request: ServerRequest<Atrium_V1_ListSharesRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ListSharesResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try service.listShares(request.message, caller: caller))
    }
}

/// `atrium.v1.RegistryInternal`, for delivery, processing and backup (service certificates only).
struct InternalRegistry: Atrium_V1_RegistryInternal.ServiceProtocol {
    let service: RegistryService

    func resolveImage(
        request: ServerRequest<Atrium_V1_ResolveImageRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ImageRecord> {
        let caller = try VerifiedCaller(message: request.message.caller)
        return ServerResponse(message: try service.resolveImage(request.message, caller: caller))
    }

    func resolveImages(
        request: ServerRequest<Atrium_V1_ResolveImagesRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ResolveImagesResponse> {
        let caller = try VerifiedCaller(message: request.message.caller)
        guard request.message.seriesInstanceUid.isEmpty else {
            return ServerResponse(message: try service.resolveSeries(request.message, caller: caller))
        }
        return ServerResponse(message: try service.resolveImages(request.message.imageIds, caller: caller))
    }

    func registerFor(
        request: StreamingServerRequest<Atrium_V1_RegisterForRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_RegisterResponse> {
        var messages = request.messages.makeAsyncIterator()
        guard let first = try await messages.next(), case .header(let header)? = first.part else {
            throw RegistryError.invalidArgument("the first message of RegisterFor must be a header")
        }
        let registrant = try VerifiedCaller(message: header.registrant)
        let audience = Array(Set(header.shareWith)).sorted()
        guard audience.count <= 32 else { throw RegistryError.invalidArgument("share_with names at most 32 subscribers") }
        for receiver in audience { try await service.requireSubscriber(receiver, requestID: registrant.requestID) }
        let response = try await service.register(registrant: registrant, header: header.header, method: Atrium_V1_RegistryInternal.Method.RegisterFor.descriptor) {
            guard let message = try await messages.next() else { return nil }
            if case .chunk(let chunk)? = message.part { return .chunk(chunk) }
            return .unexpected
        }
        try await service.share(image: response.imageID, of: registrant, with: audience.filter { $0 != registrant.subscriberID })
        return ServerResponse(message: response)
    }

    func export(
        request: ServerRequest<Atrium_V1_ExportRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Atrium_V1_ExportChunk> {
        try requireBackup(context)
        return StreamingServerResponse { writer in
            try await service.export(request.message, to: writer)
            return [:]
        }
    }

    func restore(
        request: StreamingServerRequest<Atrium_V1_RestoreChunk>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_RestoreResponse> {
        try requireBackup(context)
        var messages = request.messages.makeAsyncIterator()
        return ServerResponse(message: try await service.restore { try await messages.next() })
    }

    /// Export and restore hand over the whole index: only the backup service may call them.
    private func requireBackup(_ context: ServerContext) throws {
        guard PeerIdentity.service(of: context) == .backup else {
            throw RegistryError.permissionDenied("only the backup service may export or restore the registry")
        }
    }
}
