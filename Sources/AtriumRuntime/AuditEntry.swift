public import AtriumAPI
public import Foundation
public import GRPCCore
import SwiftProtobuf

extension Atrium_V1_AuditEntry {
    /// One entry of the audit log, the one way the gateway and every service write it.
    ///
    /// - `method` is the called method's descriptor, written as its fully qualified name without a leading slash
    ///   (`atrium.v1.Registry/Register`), so a query by method finds every service's entries for it.
    /// - The gateway writes one entry per call: who called which method, and the outcome. A service writes one per
    ///   piece of patient data the call touched (`resource`, its `owner`, `patientID`). Both carry the request ID
    ///   the gateway assigned: they are two views of one call, which `atrium audit --request-id` shows together.
    public init(
        _ method: MethodDescriptor,
        subscriberID: String,
        requestID: String,
        resource: String = "",
        owner: String = "",
        patientID: String = "",
        outcome: String = "ok",
        at time: Date = Date()
    ) {
        self.init()
        self.time = .init(date: time)
        self.subscriberID = subscriberID
        self.method = method.fullyQualifiedMethod
        self.resourceID = resource
        self.resourceOwnerID = owner
        self.patientID = patientID
        self.outcome = outcome
        self.requestID = requestID
    }

    /// An entry for a call made by `caller` (its subscriber and request ID).
    public init(
        _ method: MethodDescriptor,
        caller: VerifiedCaller,
        resource: String = "",
        owner: String = "",
        patientID: String = "",
        outcome: String = "ok",
        at time: Date = Date()
    ) {
        self.init(
            method, subscriberID: caller.subscriberID, requestID: caller.requestID, resource: resource, owner: owner,
            patientID: patientID, outcome: outcome, at: time
        )
    }
}
