import AtriumAPI
import AtriumCore
import AtriumRuntime
import Foundation
import GRPCCore
import Logging
import SwiftProtobuf
import AtriumBackend

/// Reads, listings, conditions corrections and share grants. Everything here comes from the index.
extension RegistryService {
    // MARK: - One image

    func getImage(_ request: Atrium_V1_GetImageRequest, caller: VerifiedCaller) throws -> Atrium_V1_ImageRecord {
        let row = try visibleImage(id: request.imageID, caller: caller)
        let record = try record(of: row, withHistory: request.includeConditionsHistory, requestID: caller.requestID)
        self.record(caller, Atrium_V1_Registry.Method.GetImage.descriptor, image: row)
        return record
    }

    /// For delivery and processing (internal): the record of an image `caller` may see. The caller's own
    /// service audits what it does with it.
    func resolveImage(_ request: Atrium_V1_ResolveImageRequest, caller: VerifiedCaller) throws -> Atrium_V1_ImageRecord {
        try record(of: try visibleImage(id: request.imageID, caller: caller), withHistory: request.includeConditionsHistory, requestID: caller.requestID)
    }

    /// For delivery and processing (internal): the records of several images, each visible to `caller` or NOT_FOUND.
    func resolveImages(_ ids: [String], caller: VerifiedCaller) throws -> Atrium_V1_ResolveImagesResponse {
        guard (1...1000).contains(ids.count) else { throw RegistryError.invalidArgument("image_ids must hold 1 to 1000 IDs") }
        // One read for the whole batch. An ID that cannot name an image is one that is not found.
        let named = ids.filter { !$0.isEmpty && $0.utf8.count <= 64 }
        let audience = Audience(caller: caller, hasGrants: false)
        let visible = try readIndex(caller.requestID) {
            try store.visibleImages(ids: named, receiverID: caller.subscriberID, at: now()) { audience.seesDirectly($0) }
        }
        var response = Atrium_V1_ResolveImagesResponse()
        for id in ids {
            if let row = visible[id] {
                response.records.append(row.message)
            } else {
                response.missing.append(.with {
                    $0.id = id
                    $0.code = Int32(Status.Code.notFound.rawValue)
                    $0.message = RegistryError.imageNotFound(id).rpcErrorMessage
                })
            }
        }
        return response
    }

    private func record(of row: ImageRow, withHistory: Bool, requestID: String) throws -> Atrium_V1_ImageRecord {
        var record = row.message
        if withHistory {
            record.conditionsHistory = try readIndex(requestID) { try store.conditionsHistory(imageID: row.id) }.map(\.message)
        }
        return record
    }

    func thumbnail(_ request: Atrium_V1_GetThumbnailRequest, caller: VerifiedCaller) throws -> Atrium_V1_Thumbnail {
        let row = try visibleImage(id: request.imageID, caller: caller)
        guard let key = row.thumbnailSHA256 else {
            throw RPCError(code: .failedPrecondition, message: "image '\(row.id)' has no thumbnail: \(row.pixelNote ?? "its pixels were not decoded")")
        }
        guard let thumbnail = try readIndex(caller.requestID, { try store.thumbnail(sha256: key) }) else {
            throw RegistryError.blobDamaged(row.id)
        }
        self.record(caller, Atrium_V1_Registry.Method.GetThumbnail.descriptor, image: row)
        return .with {
            $0.imageID = row.id
            $0.png = thumbnail.png
            $0.width = UInt32(thumbnail.width)
            $0.height = UInt32(thumbnail.height)
        }
    }

    /// A registrant adds or corrects conditions: a new version, merged over the current one.
    func setConditions(_ request: Atrium_V1_SetAcquisitionConditionsRequest, caller: VerifiedCaller) async throws -> Atrium_V1_SetAcquisitionConditionsResponse {
        let row = try visibleImage(id: request.imageID, caller: caller)
        guard row.registrantID == caller.subscriberID else {
            throw RegistryError.permissionDenied("only the registrant of image '\(row.id)' may change its acquisition conditions")
        }
        guard request.hasConditions else { throw RegistryError.invalidArgument("conditions is required") }
        try Conditions.validate(request.conditions, field: "conditions")
        guard request.reason.utf8.count <= 1024 else { throw RegistryError.invalidArgument("reason is longer than 1024 bytes") }
        let update = request.conditions
        let result: (ImageRow, ConditionsRow)?
        do {
            result = try await store.addConditionsVersion(imageID: row.id, recordedBy: caller.subscriberID, reason: request.reason, at: now()) { current in
                let base = (try? Atrium_V1_AcquisitionConditions(serializedBytes: current.conditions)) ?? .init()
                return try Conditions.merge(base, update).serializedData()
            }
        } catch {
            logger.error("cannot record conditions", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(caller.requestID)"])
            throw RegistryError.storageUnavailable()
        }
        guard let (updated, version) = result else { throw RegistryError.imageNotFound(row.id) }
        self.record(caller, Atrium_V1_Registry.Method.SetAcquisitionConditions.descriptor, image: updated)
        return .with { $0.version = version.message }
    }

    // MARK: - Listings

    func listImages(_ request: Atrium_V1_ListImagesRequest, caller: VerifiedCaller) throws -> Atrium_V1_ListImagesResponse {
        let query = try ImageQuery(request.filter, at: now())
        let page = try KeysetPage(request.page, scope: "i" + query.fingerprint)
        let audience = try audience(of: caller)
        let rows = try readIndex(caller.requestID) { try store.listImages(audience: audience, query: query, after: page.after, limit: page.size) }
        // A page is also bounded in bytes, far below the 4 MiB message limit, whatever the records hold.
        var images: [Atrium_V1_ImageRecord] = []
        var bytes = 0
        for row in rows {
            var record = row.message
            record.conditions.extra = [:]
            bytes += (try? record.serializedBytes() as [UInt8])?.count ?? 0
            if bytes > Self.pageByteLimit && !images.isEmpty { break }
            images.append(record)
        }
        recordListing(caller, Atrium_V1_Registry.Method.ListImages.descriptor, filter: request.filter, count: images.count)
        // A page cut short by its byte bound continues after its last record, like a full one.
        let last = rows.prefix(images.count).last.map { ($0.orderTime, $0.id) }
        let full = images.count < rows.count ? page.size : rows.count
        return .with {
            $0.images = images
            $0.nextPageToken = page.nextToken(last: last, count: full)
        }
    }

    /// About 3 MiB.
    static let pageByteLimit = 3 << 20

    /// Listings return patient data too: one audit entry per call, naming the patient filter and the count.
    private func recordListing(_ caller: VerifiedCaller, _ method: MethodDescriptor, filter: Atrium_V1_ImageFilter, count: Int) {
        record(caller, method, resource: "", owner: filter.registrantID, patientID: filter.patientID.isEmpty ? nil : filter.patientID, outcome: "ok: \(count) returned")
    }

    func listStudies(_ request: Atrium_V1_ListStudiesRequest, caller: VerifiedCaller) throws -> Atrium_V1_ListStudiesResponse {
        let (groups, token) = try groups(.study, filter: request.filter, pageRequest: request.page, caller: caller)
        return .with {
            $0.studies = groups.map { group in
                .with {
                    $0.studyInstanceUid = group.key
                    $0.patientID = group.patientID ?? ""
                    $0.patientName = group.patientName ?? ""
                    $0.modalities = group.modalities
                    $0.seriesCount = UInt32(group.seriesCount)
                    $0.imageCount = UInt32(group.imageCount)
                    if let first = group.firstAcquiredAt { $0.firstAcquiredAt = .init(date: first) }
                    $0.representativeImageID = group.representativeImageID ?? ""
                }
            }
            $0.nextPageToken = token
        }
    }

    func listSeries(_ request: Atrium_V1_ListSeriesRequest, caller: VerifiedCaller) throws -> Atrium_V1_ListSeriesResponse {
        let (groups, token) = try groups(.series, filter: request.filter, pageRequest: request.page, caller: caller)
        return .with {
            $0.series = groups.map { group in
                .with {
                    $0.seriesInstanceUid = group.key
                    $0.studyInstanceUid = group.studyUID ?? ""
                    $0.modality = group.modalities.first ?? ""
                    $0.imageCount = UInt32(group.imageCount)
                    $0.representativeImageID = group.representativeImageID ?? ""
                    $0.bodyPart = group.bodyPart ?? ""
                }
            }
            $0.nextPageToken = token
        }
    }

    private func groups(
        _ column: RegistryStore.GroupColumn,
        filter: Atrium_V1_ImageFilter,
        pageRequest: Atrium_V1_PageRequest,
        caller: VerifiedCaller
    ) throws -> ([GroupSummary], String) {
        let query = try ImageQuery(filter, at: now())
        let page = try KeysetPage(pageRequest, scope: (column == .study ? "t" : "s") + query.fingerprint)
        let audience = try audience(of: caller)
        let groups = try readIndex(caller.requestID) {
            try store.listGroups(by: column, audience: audience, query: query, after: page.after?.key, limit: page.size)
        }
        recordListing(caller, column == .study ? Atrium_V1_Registry.Method.ListStudies.descriptor : Atrium_V1_Registry.Method.ListSeries.descriptor, filter: filter, count: groups.count)
        // Groups are keyed by UID alone; the token's time is unused (0).
        return (groups, page.nextToken(last: groups.last.map { (0, $0.key) }, count: groups.count))
    }

    // MARK: - Share grants

    func grantShare(_ request: Atrium_V1_GrantShareRequest, caller: VerifiedCaller) async throws -> Atrium_V1_ShareGrant {
        let receiver = request.receiverID
        guard (1...64).contains(receiver.utf8.count) else { throw RegistryError.invalidArgument("receiver_id must be 1 to 64 bytes") }
        guard receiver != caller.subscriberID else { throw RegistryError.invalidArgument("receiver_id is the caller; a registrant always sees its own images") }
        var patientID: String?
        var studies: [String] = []
        switch request.scope {
        case .patientID(let patient):
            guard (1...64).contains(patient.utf8.count) else { throw RegistryError.invalidArgument("patient_id must be 1 to 64 bytes") }
            patientID = patient
        case .studies(let list):
            studies = Array(Set(list.studyInstanceUids)).sorted()
            guard (1...1000).contains(studies.count) else { throw RegistryError.invalidArgument("studies must name 1 to 1000 study instance UIDs") }
            for uid in studies { try Ingest.checkUID(uid, name: "studies.study_instance_uids") }
        case nil:
            throw RegistryError.invalidArgument("a grant needs a scope: patient_id or studies")
        }
        let now = self.now()
        var expiry: Date?
        if request.hasExpiresAt {
            let millis = try ImageQuery.millis(request.expiresAt, field: "expires_at")
            expiry = Date(timeIntervalSince1970: Double(millis) / 1000)
            guard expiry! > now else { throw RegistryError.invalidArgument("expires_at is in the past") }
        }
        try await requireSubscriber(receiver, requestID: caller.requestID)
        let grant = ShareGrantRow(
            id: Identifier.make(prefix: "shr"),
            grantorID: caller.subscriberID,
            receiverID: receiver,
            patientID: patientID,
            expiresAt: expiry,
            createdAt: now,
            revokedAt: nil
        )
        let scope = patientID.map { "patient \($0)" } ?? (studies.count == 1 ? "study \(studies[0])" : "\(studies.count) studies")
        let entry = Atrium_V1_InboxEntry.with {
            $0.source = caller.subscriberID
            $0.kind = "share.granted"
            $0.message = "\(caller.subscriberID) shares \(scope) with you (grant \(grant.id))"
        }
        do {
            try await store.insert(grant, studies: studies, notice: Notice(recipientID: receiver, entryKey: "share:\(grant.id)", entry: try entry.serializedBytes()))
        } catch {
            logger.error("cannot record a share grant", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(caller.requestID)"])
            throw RegistryError.storageUnavailable()
        }
        notices.wake()
        recordGrant(caller, Atrium_V1_Registry.Method.GrantShare.descriptor, grant)
        return grant.message(studies: studies)
    }

    func revokeShare(_ request: Atrium_V1_RevokeShareRequest, caller: VerifiedCaller) async throws -> Atrium_V1_RevokeShareResponse {
        guard (1...64).contains(request.grantID.utf8.count) else { throw RegistryError.invalidArgument("grant_id must be 1 to 64 bytes") }
        let result: (ShareGrantRow, [String])?
        do {
            result = try await store.revoke(grantID: request.grantID, grantorID: caller.subscriberID, at: now())
        } catch {
            logger.error("cannot revoke a share grant", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(caller.requestID)"])
            throw RegistryError.storageUnavailable()
        }
        guard let (grant, studies) = result else { throw RegistryError.grantNotFound(request.grantID) }
        recordGrant(caller, Atrium_V1_Registry.Method.RevokeShare.descriptor, grant)
        return .with { $0.grant = grant.message(studies: studies) }
    }

    func listShares(_ request: Atrium_V1_ListSharesRequest, caller: VerifiedCaller) throws -> Atrium_V1_ListSharesResponse {
        guard request.page.pageToken.utf8.count <= 64 else { throw RegistryError.invalidArgument("page.page_token was not issued by this service") }
        guard request.page.pageSize <= 1000 else { throw RegistryError.invalidArgument("page.page_size must be at most 1000") }
        let size = request.page.pageSize == 0 ? 100 : Int(request.page.pageSize)
        let after = request.page.pageToken.isEmpty ? nil : request.page.pageToken
        let grants = try readIndex(caller.requestID) {
            try store.grants(
                subscriberID: caller.subscriberID,
                byGrantor: request.grantedByMe,
                includeInactive: request.includeInactive,
                at: now(),
                after: after,
                limit: size
            )
        }
        return .with {
            $0.grants = grants.map { $0.0.message(studies: $0.1) }
            $0.nextPageToken = grants.count == size ? (grants.last?.0.id ?? "") : ""
        }
    }

    /// Lets `receivers` see one image `registrant` registered (a processing result's destinations).
    func share(image imageID: String, of registrant: VerifiedCaller, with receivers: [String]) async throws {
        guard !receivers.isEmpty else { return }
        do {
            try await store.grantImage(imageID, grantorID: registrant.subscriberID, to: receivers, at: now())
        } catch {
            logger.error("cannot record image grants", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(registrant.requestID)"])
            throw RegistryError.storageUnavailable()
        }
        for receiver in receivers {
            record(registrant, Atrium_V1_RegistryInternal.Method.RegisterFor.descriptor, resource: imageID, owner: registrant.subscriberID, patientID: nil, outcome: "ok: shared with \(receiver)")
        }
    }

    /// One page of the current images of a series that `caller` may see (processing orders them itself).
    func resolveSeries(_ request: Atrium_V1_ResolveImagesRequest, caller: VerifiedCaller) throws -> Atrium_V1_ResolveImagesResponse {
        guard request.imageIds.isEmpty else { throw RegistryError.invalidArgument("give image_ids or series_instance_uid, not both") }
        let listing = try listImages(
            .with {
                $0.filter = .with { $0.seriesInstanceUid = request.seriesInstanceUid }
                $0.page = request.page
            },
            caller: caller
        )
        return .with {
            $0.records = listing.images
            $0.nextPageToken = listing.nextPageToken
        }
    }

    /// NOT_FOUND unless security knows an active subscriber `id`.
    func requireSubscriber(_ id: String, requestID: String) async throws {
        let response: Atrium_V1_LookupSubscribersResponse
        do {
            response = try await security.lookupSubscribers(.with { $0.subscriberIds = [id] }, options: .internalCall)
        } catch {
            logger.error("cannot look up a subscriber", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw RPCError(code: .unavailable, message: "the receiver cannot be checked right now; nothing was granted, try again")
        }
        guard let subscriber = response.subscribers.first(where: { $0.subscriberID == id }), subscriber.status != .terminated else {
            throw RegistryError.subscriberNotFound(id)
        }
    }

    private func recordGrant(_ caller: VerifiedCaller, _ method: MethodDescriptor, _ grant: ShareGrantRow) {
        record(caller, method, resource: grant.id, owner: grant.grantorID, patientID: grant.patientID)
    }
}

extension ConditionsRow {
    var message: Atrium_V1_ConditionsVersion {
        .with {
            $0.version = UInt32(version)
            $0.conditions = (try? Atrium_V1_AcquisitionConditions(serializedBytes: conditions)) ?? .init()
            $0.recordedBy = recordedBy
            $0.recordedAt = .init(date: recordedAt)
            $0.reason = reason
        }
    }
}

extension ShareGrantRow {
    /// The grant as a message; `scope` holds its studies, or its images when image-scoped.
    func message(studies scope: [String]) -> Atrium_V1_ShareGrant {
        .with {
            $0.grantID = id
            $0.grantorID = grantorID
            $0.receiverID = receiverID
            if let patientID {
                $0.patientID = patientID
            } else if imageScoped == true {
                $0.images = .with { $0.imageIds = scope }
            } else {
                $0.studies = .with { $0.studyInstanceUids = scope }
            }
            if let expiresAt { $0.expiresAt = .init(date: expiresAt) }
            $0.createdAt = .init(date: createdAt)
            if let revokedAt { $0.revokedAt = .init(date: revokedAt) }
        }
    }
}
