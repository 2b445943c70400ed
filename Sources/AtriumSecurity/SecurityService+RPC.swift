import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import Foundation
import GRPCCore
import SwiftASN1
import X509
import AtriumTransport

/// The caller of an `SecurityAdmin` RPC: vouched for by the gateway and holding the `admin` role (the gateway
/// checked it already; this is the second lock on the door).
private func administrator() throws -> VerifiedCaller {
    let caller = try VerifiedCaller.current()
    guard caller.roles.contains(.admin) else { throw SecurityError.permissionDenied("contract lacks role 'admin'") }
    return caller
}

/// `atrium.v1.SecurityAdmin`: the operator's RPCs.
struct AdminSecurity: Atrium_V1_SecurityAdmin.ServiceProtocol {
    let service: SecurityService
    private var store: SecurityStore { service.store }
    private var now: Date { service.now() }

    func createSubscriber(request: ServerRequest<Atrium_V1_CreateSubscriberRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Subscriber> {
        ServerResponse(message: try createSubscriber(request.message, context: context))
    }

    private func createSubscriber(_ request: Atrium_V1_CreateSubscriberRequest, context: ServerContext) throws -> Atrium_V1_Subscriber {
        let caller = try administrator()
        let kind = try Validate.kind(request.kind)
        let name = try Validate.displayName(request.displayName)
        let patients = try Validate.patientIDs(request.patientIds, kind: kind)
        let contract = try Validate.contract(request.contract, kind: kind)
        guard request.externalID.utf8.count <= 64 else { throw SecurityError.invalidArgument("external_id is longer than 64 bytes") }
        let view = try service.guarded(caller.requestID) {
            try store.createSubscriber(
                displayName: name,
                kind: kind,
                patientIDs: patients,
                externalID: request.externalID.isEmpty ? nil : request.externalID,
                contract: contract,
                now: now
            )
        }
        service.audit(caller, context.descriptor, resource: view.record.id)
        return view.message
    }

    func getSubscriber(request: ServerRequest<Atrium_V1_GetSubscriberRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Subscriber> {
        ServerResponse(message: try getSubscriber(request.message, context: context))
    }

    private func getSubscriber(_ request: Atrium_V1_GetSubscriberRequest, context: ServerContext) throws -> Atrium_V1_Subscriber {
        let caller = try administrator()
        let id = try Validate.subscriberID(request.subscriberID)
        return try service.guarded(caller.requestID) { try store.subscriber(id).message }
    }

    func listSubscribers(request: ServerRequest<Atrium_V1_ListSubscribersRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_ListSubscribersResponse> {
        ServerResponse(message: try listSubscribers(request.message, context: context))
    }

    private func listSubscribers(_ request: Atrium_V1_ListSubscribersRequest, context: ServerContext) throws -> Atrium_V1_ListSubscribersResponse {
        let caller = try administrator()
        let page = try Page(request.page)
        let views = try service.guarded(caller.requestID) {
            try store.subscribers(
                kind: request.kind == .unspecified ? nil : request.kind,
                status: request.status == .unspecified ? nil : request.status,
                after: page.after,
                limit: page.size
            )
        }
        return .with {
            $0.subscribers = views.map(\.message)
            $0.nextPageToken = page.nextToken(lastKey: views.last?.record.id, count: views.count)
        }
    }

    func updateSubscriber(request: ServerRequest<Atrium_V1_UpdateSubscriberRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Subscriber> {
        ServerResponse(message: try updateSubscriber(request.message, context: context))
    }

    private func updateSubscriber(_ request: Atrium_V1_UpdateSubscriberRequest, context: ServerContext) throws -> Atrium_V1_Subscriber {
        let caller = try administrator()
        let id = try Validate.subscriberID(request.subscriberID)
        let name = request.displayName.isEmpty ? nil : try Validate.displayName(request.displayName)
        let view = try service.guarded(caller.requestID) {
            let kind = try store.subscriber(id).kind
            let patients = request.replacePatientIds ? try Validate.patientIDs(request.patientIds, kind: kind) : nil
            return try store.updateSubscriber(id, displayName: name, patientIDs: patients)
        }
        service.audit(caller, context.descriptor, resource: id)
        return view.message
    }

    func setContract(request: ServerRequest<Atrium_V1_SetContractRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Contract> {
        ServerResponse(message: try setContract(request.message, context: context))
    }

    private func setContract(_ request: Atrium_V1_SetContractRequest, context: ServerContext) throws -> Atrium_V1_Contract {
        let caller = try administrator()
        let id = try Validate.subscriberID(request.subscriberID)
        guard request.hasContract else { throw SecurityError.invalidArgument("contract is required") }
        let contract = try service.guarded(caller.requestID) {
            let kind = try store.subscriber(id).kind
            return try store.setContract(id, try Validate.contract(request.contract, kind: kind), now: now)
        }
        service.audit(caller, context.descriptor, resource: id)
        return contract
    }

    func suspendSubscriber(request: ServerRequest<Atrium_V1_SuspendSubscriberRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Subscriber> {
        ServerResponse(message: try suspendSubscriber(request.message, context: context))
    }

    private func suspendSubscriber(_ request: Atrium_V1_SuspendSubscriberRequest, context: ServerContext) throws -> Atrium_V1_Subscriber {
        try changeStatus(request.subscriberID, to: .suspended, context: context)
    }

    func resumeSubscriber(request: ServerRequest<Atrium_V1_ResumeSubscriberRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Subscriber> {
        ServerResponse(message: try resumeSubscriber(request.message, context: context))
    }

    private func resumeSubscriber(_ request: Atrium_V1_ResumeSubscriberRequest, context: ServerContext) throws -> Atrium_V1_Subscriber {
        try changeStatus(request.subscriberID, to: .active, context: context)
    }

    func terminateSubscriber(request: ServerRequest<Atrium_V1_TerminateSubscriberRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Subscriber> {
        ServerResponse(message: try terminateSubscriber(request.message, context: context))
    }

    private func terminateSubscriber(_ request: Atrium_V1_TerminateSubscriberRequest, context: ServerContext) throws -> Atrium_V1_Subscriber {
        try changeStatus(request.subscriberID, to: .terminated, context: context)
    }

    private func changeStatus(_ subscriberID: String, to status: Atrium_V1_SubscriberStatus, context: ServerContext) throws -> Atrium_V1_Subscriber {
        let caller = try administrator()
        let id = try Validate.subscriberID(subscriberID)
        guard id != caller.subscriberID || status == .active else {
            throw SecurityError.failedPrecondition("an operator cannot suspend or terminate its own subscription")
        }
        let view = try service.guarded(caller.requestID) { try store.setStatus(id, to: status, now: now) }
        service.audit(caller, context.descriptor, resource: id)
        return view.message
    }

    func createApiKey(request: ServerRequest<Atrium_V1_CreateApiKeyRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_CreateApiKeyResponse> {
        ServerResponse(message: try createApiKey(request.message, context: context))
    }

    private func createApiKey(_ request: Atrium_V1_CreateApiKeyRequest, context: ServerContext) throws -> Atrium_V1_CreateApiKeyResponse {
        let caller = try administrator()
        let id = try Validate.subscriberID(request.subscriberID)
        guard request.label.utf8.count <= 100 else { throw SecurityError.invalidArgument("label is longer than 100 bytes") }
        let expiry = request.hasExpiresAt ? try Validate.time(request.expiresAt, field: "expires_at") : nil
        if let expiry, expiry <= now { throw SecurityError.invalidArgument("expires_at is in the past") }
        let (record, secret) = try service.guarded(caller.requestID) {
            try store.createApiKey(subscriberID: id, label: request.label, expiresAt: expiry, now: now)
        }
        service.audit(caller, context.descriptor, resource: id)
        return .with {
            $0.key = record.message
            $0.secret = secret
        }
    }

    func listApiKeys(request: ServerRequest<Atrium_V1_ListApiKeysRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_ListApiKeysResponse> {
        ServerResponse(message: try listApiKeys(request.message, context: context))
    }

    private func listApiKeys(_ request: Atrium_V1_ListApiKeysRequest, context: ServerContext) throws -> Atrium_V1_ListApiKeysResponse {
        let caller = try administrator()
        let id = try Validate.subscriberID(request.subscriberID)
        let keys = try service.guarded(caller.requestID) { try store.apiKeys(of: id, includeRevoked: request.includeRevoked) }
        return .with { $0.keys = keys.map(\.message) }
    }

    func revokeApiKey(request: ServerRequest<Atrium_V1_RevokeApiKeyRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_ApiKey> {
        ServerResponse(message: try revokeApiKey(request.message, context: context))
    }

    private func revokeApiKey(_ request: Atrium_V1_RevokeApiKeyRequest, context: ServerContext) throws -> Atrium_V1_ApiKey {
        let caller = try administrator()
        guard !request.prefix.isEmpty else { throw SecurityError.invalidArgument("prefix is required") }
        let record = try service.guarded(caller.requestID) { try store.revokeApiKey(prefix: request.prefix, now: now) }
        service.audit(caller, context.descriptor, resource: record.subscriberID)
        return record.message
    }

    func createEnrollmentToken(request: ServerRequest<Atrium_V1_CreateEnrollmentTokenRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_EnrollmentToken> {
        ServerResponse(message: try createEnrollmentToken(request.message, context: context))
    }

    private func createEnrollmentToken(_ request: Atrium_V1_CreateEnrollmentTokenRequest, context: ServerContext) throws -> Atrium_V1_EnrollmentToken {
        let caller = try administrator()
        let id = try Validate.subscriberID(request.subscriberID)
        let seconds = request.validForSeconds == 0 ? 86_400 : request.validForSeconds
        guard seconds <= 30 * 86_400 else { throw SecurityError.invalidArgument("valid_for_seconds must be at most 30 days (2592000)") }
        let expiry = now.addingTimeInterval(TimeInterval(seconds))
        let token = try service.guarded(caller.requestID) { try store.createEnrollmentToken(subscriberID: id, expiresAt: expiry, now: now) }
        service.audit(caller, context.descriptor, resource: id)
        return .with {
            $0.token = token
            $0.subscriberID = id
            $0.expiresAt = .init(date: expiry)
        }
    }

    func revokeCertificate(request: ServerRequest<Atrium_V1_RevokeCertificateRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_IssuedCertificate> {
        ServerResponse(message: try revokeCertificate(request.message, context: context))
    }

    private func revokeCertificate(_ request: Atrium_V1_RevokeCertificateRequest, context: ServerContext) throws -> Atrium_V1_IssuedCertificate {
        let caller = try administrator()
        guard !request.serial.isEmpty else { throw SecurityError.invalidArgument("serial is required") }
        let record = try service.guarded(caller.requestID) { try store.revokeCertificate(serial: request.serial.lowercased(), now: now) }
        service.audit(caller, context.descriptor, resource: record.subscriberID)
        return record.message
    }

    func getSubscriberUsage(request: ServerRequest<Atrium_V1_GetSubscriberUsageRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Usage> {
        ServerResponse(message: try getSubscriberUsage(request.message, context: context))
    }

    private func getSubscriberUsage(_ request: Atrium_V1_GetSubscriberUsageRequest, context: ServerContext) throws -> Atrium_V1_Usage {
        let caller = try administrator()
        return try service.usage(of: try Validate.subscriberID(request.subscriberID), requestID: caller.requestID)
    }

    func getSubscriberStatement(request: ServerRequest<Atrium_V1_GetSubscriberStatementRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Statement> {
        ServerResponse(message: try getSubscriberStatement(request.message, context: context))
    }

    private func getSubscriberStatement(_ request: Atrium_V1_GetSubscriberStatementRequest, context: ServerContext) throws -> Atrium_V1_Statement {
        let caller = try administrator()
        return try service.statement(of: try Validate.subscriberID(request.subscriberID), period: request.period, requestID: caller.requestID)
    }

    func queryAuditLog(request: ServerRequest<Atrium_V1_QueryAuditLogRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_QueryAuditLogResponse> {
        ServerResponse(message: try queryAuditLog(request.message, context: context))
    }

    private func queryAuditLog(_ request: Atrium_V1_QueryAuditLogRequest, context: ServerContext) throws -> Atrium_V1_QueryAuditLogResponse {
        let caller = try administrator()
        let range = try Validate.range(request.time, field: "time")
        let filter = SecurityStore.AuditFilter(
            subscriberID: request.subscriberID.isEmpty ? nil : request.subscriberID,
            resourceID: request.resourceID.isEmpty ? nil : request.resourceID,
            patientID: request.patientID.isEmpty ? nil : request.patientID,
            method: request.method.isEmpty ? nil : request.method,
            requestID: request.requestID.isEmpty ? nil : request.requestID,
            from: range.from,
            until: range.until
        )
        return try service.auditPage(filter, page: request.page, requestID: caller.requestID)
    }

    func verifyAuditLog(request: ServerRequest<Atrium_V1_VerifyAuditLogRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_VerifyAuditLogResponse> {
        ServerResponse(message: try verifyAuditLog(request.message, context: context))
    }

    private func verifyAuditLog(_ request: Atrium_V1_VerifyAuditLogRequest, context: ServerContext) throws -> Atrium_V1_VerifyAuditLogResponse {
        let caller = try administrator()
        let result = try service.guarded(caller.requestID) { try store.verifyAudit() }
        service.audit(caller, context.descriptor, resource: "", outcome: result.firstBroken == nil ? "ok" : "DATA_LOSS")
        return .with {
            $0.intact = result.firstBroken == nil
            $0.entriesChecked = UInt64(result.checked)
            $0.firstBrokenSequence = UInt64(result.firstBroken ?? 0)
            $0.detail = result.detail
        }
    }
}

/// `atrium.v1.Account`: what any subscriber may ask about itself, and enrolment.
struct AccountSecurity: Atrium_V1_Account.ServiceProtocol {
    let service: SecurityService
    private var store: SecurityStore { service.store }

    func whoAmI(request: ServerRequest<Atrium_V1_WhoAmIRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Subscriber> {
        ServerResponse(message: try whoAmI(request.message, context: context))
    }

    private func whoAmI(_ request: Atrium_V1_WhoAmIRequest, context: ServerContext) throws -> Atrium_V1_Subscriber {
        let caller = try VerifiedCaller.current()
        return try service.guarded(caller.requestID) { try store.subscriber(caller.subscriberID).message }
    }

    func enroll(request: ServerRequest<Atrium_V1_EnrollRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_EnrollResponse> {
        ServerResponse(message: try enroll(request.message, metadata: request.metadata, context: context))
    }

    private func enroll(_ request: Atrium_V1_EnrollRequest, metadata: Metadata, context: ServerContext) throws -> Atrium_V1_EnrollResponse {
        // Enrolment carries no subscriber identity (the token is the credential), but it must still come
        // through the gateway, which rate-limits it.
        guard PeerIdentity.service(of: context) == .gateway else {
            throw SecurityError.unauthenticated("enrolment is accepted only through the Atrium gateway")
        }
        let requestID = metadata[stringValues: AtriumMetadata.requestID].first(where: { _ in true }) ?? ""
        guard let authority = service.enrollment else {
            throw SecurityError.failedPrecondition("enrolment is not configured on this network (no issuing CA key)")
        }
        guard !request.token.isEmpty else { throw SecurityError.invalidArgument("token is required") }
        let publicKey = try EnrollmentAuthority.publicKey(ofRequest: request.csrPem)
        let now = service.now()
        var issued: Certificate?
        let record = try service.guarded(requestID) {
            try store.enroll(token: request.token, now: now) { subscriberID in
                let certificate = try authority.issue(publicKey: publicKey, subscriberID: subscriberID, now: now)
                issued = certificate
                return CertificateRecord(
                    serial: CertificateIdentity.serial(of: certificate),
                    subscriberID: subscriberID,
                    sha256: try CertificateIdentity.fingerprint(of: certificate),
                    notBefore: certificate.notValidBefore,
                    notAfter: certificate.notValidAfter,
                    revokedAt: nil
                )
            }
        }
        guard let issued else { throw SecurityError.storageUnavailable() }
        service.audit(
            VerifiedCaller(subscriberID: record.subscriberID, kind: .unspecified, roles: [], requestID: requestID),
            context.descriptor,
            resource: record.serial
        )
        return .with {
            $0.subscriberID = record.subscriberID
            $0.certificatePem = (try? issued.serializeAsPEM().pemString) ?? ""
            $0.caCertificatePem = authority.caPEM
            $0.notAfter = .init(date: record.notAfter)
        }
    }

    func getUsage(request: ServerRequest<Atrium_V1_GetUsageRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Usage> {
        ServerResponse(message: try getUsage(request.message, context: context))
    }

    private func getUsage(_ request: Atrium_V1_GetUsageRequest, context: ServerContext) throws -> Atrium_V1_Usage {
        let caller = try VerifiedCaller.current()
        return try service.usage(of: caller.subscriberID, requestID: caller.requestID)
    }

    func getStatement(request: ServerRequest<Atrium_V1_GetStatementRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Statement> {
        ServerResponse(message: try getStatement(request.message, context: context))
    }

    private func getStatement(_ request: Atrium_V1_GetStatementRequest, context: ServerContext) throws -> Atrium_V1_Statement {
        let caller = try VerifiedCaller.current()
        return try service.statement(of: caller.subscriberID, period: request.period, requestID: caller.requestID)
    }

    func quote(request: ServerRequest<Atrium_V1_QuoteRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_QuoteResponse> {
        ServerResponse(message: try quote(request.message, context: context))
    }

    private func quote(_ request: Atrium_V1_QuoteRequest, context: ServerContext) throws -> Atrium_V1_QuoteResponse {
        let caller = try VerifiedCaller.current()
        return try service.quote(for: caller.subscriberID, request, requestID: caller.requestID)
    }

    func listNotifications(request: ServerRequest<Atrium_V1_ListNotificationsRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_ListNotificationsResponse> {
        ServerResponse(message: try listNotifications(request.message, context: context))
    }

    private func listNotifications(_ request: Atrium_V1_ListNotificationsRequest, context: ServerContext) throws -> Atrium_V1_ListNotificationsResponse {
        let caller = try VerifiedCaller.current()
        let page = try Page(request.page)
        let before = page.after == nil ? nil : try page.afterSequence
        let records = try service.guarded(caller.requestID) { try store.notifications(of: caller.subscriberID, before: before, limit: page.size) }
        return .with {
            $0.notifications = records.map(\.record.notification)
            $0.nextPageToken = page.nextToken(lastKey: records.last.map { String($0.position) }, count: records.count)
        }
    }

    func listAccesses(request: ServerRequest<Atrium_V1_ListAccessesRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_QueryAuditLogResponse> {
        ServerResponse(message: try listAccesses(request.message, context: context))
    }

    private func listAccesses(_ request: Atrium_V1_ListAccessesRequest, context: ServerContext) throws -> Atrium_V1_QueryAuditLogResponse {
        let caller = try VerifiedCaller.current()
        let range = try Validate.range(request.time, field: "time")
        let filter = SecurityStore.AuditFilter(ownedBy: (caller.subscriberID, caller.patientIDs), from: range.from, until: range.until)
        return try service.auditPage(filter, page: request.page, requestID: caller.requestID)
    }
}

extension SecurityService {
    /// One page of the audit log.
    func auditPage(_ filter: SecurityStore.AuditFilter, page request: Atrium_V1_PageRequest, requestID: String) throws -> Atrium_V1_QueryAuditLogResponse {
        let page = try Page(request)
        let after = try page.afterSequence
        let records = try guarded(requestID) { try store.audit(filter, after: after, limit: page.size) }
        return .with {
            $0.entries = records.map(\.message)
            $0.nextPageToken = page.nextToken(lastKey: records.last.map { String($0.sequence) }, count: records.count)
        }
    }
}

/// `atrium.v1.SecurityInternal`, for the gateway and the other services (service certificates only).
struct InternalSecurity: Atrium_V1_SecurityInternal.SimpleServiceProtocol {
    let service: SecurityService
    private var store: SecurityStore { service.store }

    func authorize(request: Atrium_V1_AuthorizeRequest, context: ServerContext) async throws -> Atrium_V1_AuthorizeResponse {
        try service.authorize(request)
    }

    func recordUsage(request: Atrium_V1_RecordUsageRequest, context: ServerContext) async throws -> Atrium_V1_RecordUsageResponse {
        guard request.events.count <= 10_000 else { throw SecurityError.invalidArgument("at most 10000 events per call") }
        let now = service.now()
        let events = try request.events.map { event -> UsageEventRecord in
            guard !event.eventID.isEmpty, event.eventID.utf8.count <= 200 else {
                throw SecurityError.invalidArgument("every event needs an event_id of 1 to 200 bytes")
            }
            guard !event.subscriberID.isEmpty else { throw SecurityError.invalidArgument("event '\(event.eventID)' has no subscriber_id") }
            let time = event.hasTime ? try Validate.time(event.time, field: "event '\(event.eventID)' time") : now
            // Storage is integrated month by month up to an event's time: keep times near the present.
            guard time > now.addingTimeInterval(-400 * 86_400), time < now.addingTimeInterval(3600) else {
                throw SecurityError.invalidArgument("event '\(event.eventID)' time must be within the last 400 days and not in the future")
            }
            var input = UsageEventRecord(eventID: event.eventID, subscriberID: event.subscriberID, time: time)
            switch event.kind {
            case .storedBytesDelta(let delta): input.storedBytesDelta = delta
            case .delivery(let delivery):
                input.deliveries = 1
                input.deliveredBytes = Int64(clamping: delivery.bytes)
            case .processing(let processing):
                guard processing.cpuSeconds.isFinite, processing.cpuSeconds >= 0 else {
                    throw SecurityError.invalidArgument("event '\(event.eventID)' has an invalid cpu_seconds")
                }
                input.processedImages = Int64(processing.images)
                input.processedBytes = Int64(clamping: processing.bytesIn)
                input.cpuMilliseconds = Int64((min(processing.cpuSeconds, 1e12) * 1000).rounded())
            case nil:
                throw SecurityError.invalidArgument("event '\(event.eventID)' has no kind")
            }
            return input
        }
        let recorded = try service.guarded("") { try store.record(events, now: now) }
        return .with { $0.recorded = UInt32(recorded) }
    }

    func reserveStorage(request: Atrium_V1_ReserveStorageRequest, context: ServerContext) async throws -> Atrium_V1_ReserveStorageResponse {
        let id = try Validate.subscriberID(request.subscriberID)
        guard !request.reservationID.isEmpty, request.reservationID.utf8.count <= 200 else {
            throw SecurityError.invalidArgument("reservation_id of 1 to 200 bytes is required")
        }
        guard request.bytes <= UInt64(Int64.max) else { throw SecurityError.invalidArgument("bytes is too large") }
        let lifetime = request.holdSeconds == 0 ? SecurityStore.reservationLifetime : TimeInterval(min(request.holdSeconds, 86_400))
        let now = service.now()
        let state = try service.guarded(request.reservationID) {
            try store.reserve(subscriberID: id, bytes: Int64(request.bytes), reservationID: request.reservationID, lifetime: lifetime, now: now)
        }
        return .with {
            $0.reservationID = request.reservationID
            $0.usage = SecurityService.usageMessage(subscriberID: id, state: state, period: BillingPeriod(containing: now))
        }
    }

    func settleReservation(request: Atrium_V1_SettleReservationRequest, context: ServerContext) async throws -> Atrium_V1_SettleReservationResponse {
        let settlement = try Self.settlement(request)
        let now = service.now()
        let (subscriberID, state) = try service.guarded(request.reservationID) {
            try store.settle(settlement, now: now)
        }
        return .with { $0.usage = SecurityService.usageMessage(subscriberID: subscriberID, state: state, period: BillingPeriod(containing: now)) }
    }

    func settleReservations(request: Atrium_V1_SettleReservationsRequest, context: ServerContext) async throws -> Atrium_V1_SettleReservationsResponse {
        guard request.settlements.count <= 10_000 else { throw SecurityError.invalidArgument("at most 10000 settlements per call") }
        let settlements = try request.settlements.map(Self.settlement)
        let applied = try service.guarded("") { try store.settle(settlements, now: service.now()).applied }
        return .with { $0.applied = UInt32(applied) }
    }

    private static func settlement(_ request: Atrium_V1_SettleReservationRequest) throws -> SecurityStore.Settlement {
        guard !request.reservationID.isEmpty, request.reservationID.utf8.count <= 200 else {
            throw SecurityError.invalidArgument("reservation_id of 1 to 200 bytes is required")
        }
        guard request.committedBytes <= UInt64(Int64.max), request.drawnBytes <= UInt64(Int64.max) else {
            throw SecurityError.invalidArgument("committed_bytes or drawn_bytes is too large")
        }
        guard request.leaseID.utf8.count <= 200 else { throw SecurityError.invalidArgument("lease_id is longer than 200 bytes") }
        if !request.leaseID.isEmpty && request.subscriberID.isEmpty {
            throw SecurityError.invalidArgument("a draw on a lease needs subscriber_id")
        }
        return SecurityStore.Settlement(
            reservationID: request.reservationID,
            commit: request.commit,
            committedBytes: Int64(request.committedBytes),
            subscriberID: request.subscriberID.isEmpty ? nil : request.subscriberID,
            leaseID: request.leaseID.isEmpty ? nil : request.leaseID,
            drawnBytes: Int64(request.drawnBytes)
        )
    }

    func appendAudit(request: Atrium_V1_AppendAuditRequest, context: ServerContext) async throws -> Atrium_V1_AppendAuditResponse {
        guard request.entries.count <= 10_000 else { throw SecurityError.invalidArgument("at most 10000 entries per call") }
        let now = service.now()
        let entries = try request.entries.map { entry -> SecurityStore.AuditInput in
            guard !entry.method.isEmpty, !entry.outcome.isEmpty else { throw SecurityError.invalidArgument("every entry needs a method and an outcome") }
            var input = SecurityStore.AuditInput(entry)
            input.time = entry.hasTime ? try Validate.time(entry.time, field: "entry time") : now
            return input
        }
        let last = try service.guarded("") { try store.appendAudit(entries) }
        return .with { $0.lastSequence = UInt64(last) }
    }

    func checkBudget(request: Atrium_V1_CheckBudgetRequest, context: ServerContext) async throws -> Atrium_V1_QuoteResponse {
        let id = try Validate.subscriberID(request.subscriberID)
        let quote = try service.quote(for: id, request.request, requestID: "")
        guard !quote.exceedsBudget else {
            throw SecurityError.resourceExhausted("the request's fee of \(quote.fee.minorUnits) \(quote.fee.currency) minor units would exceed the contract's budget cap for this period")
        }
        return quote
    }

    func lookupSubscribers(request: Atrium_V1_LookupSubscribersRequest, context: ServerContext) async throws -> Atrium_V1_LookupSubscribersResponse {
        guard request.subscriberIds.count <= 1000 else { throw SecurityError.invalidArgument("at most 1000 subscriber_ids per call") }
        let views = try service.guarded("") { try store.subscribers(ids: request.subscriberIds) }
        return .with { $0.subscribers = views.map(\.message) }
    }

    func export(request: Atrium_V1_ExportRequest, response: RPCWriter<Atrium_V1_ExportChunk>, context: ServerContext) async throws {
        throw UnimplementedService.error(context.descriptor, subject: "the backup issue")
    }

    func restore(request: RPCAsyncSequence<Atrium_V1_RestoreChunk, any Error>, context: ServerContext) async throws -> Atrium_V1_RestoreResponse {
        throw UnimplementedService.error(context.descriptor, subject: "the backup issue")
    }
}
