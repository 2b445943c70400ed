import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import Foundation
import GRPCCore
import Logging

/// Inboxes: durable entries other services address to a subscriber (processing results, share notices).
/// Each subscriber's entries have increasing cursors; an entry stays until the subscriber acknowledges it.
extension DeliveryService {
    /// The largest entry accepted, serialized.
    static let maxEntryBytes = 64 << 10

    /// Appends an entry to each recipient's inbox, once per (recipient, entry key), and wakes their watchers.
    func deliver(_ request: Atrium_V1_DeliverRequest, from service: String) async throws -> Atrium_V1_DeliverResponse {
        let recipients = Array(Set(request.recipientIds)).sorted()
        guard !recipients.isEmpty, recipients.count <= 1000 else { throw DeliveryError.invalidArgument("recipient_ids must name 1 to 1000 subscribers") }
        guard !request.entryKey.isEmpty, request.entryKey.utf8.count <= 256 else { throw DeliveryError.invalidArgument("entry_key must be 1 to 256 bytes") }
        guard !request.entry.kind.isEmpty, request.entry.kind.utf8.count <= 64 else { throw DeliveryError.invalidArgument("entry.kind must be 1 to 64 bytes") }
        guard request.entry.images.count <= 1000 else { throw DeliveryError.invalidArgument("entry.images holds at most 1000 images") }
        var entry = request.entry
        entry.cursor = 0
        entry.createdAt = .init()
        if entry.source.isEmpty { entry.source = service }
        let bytes = try entry.serializedBytes() as Data
        guard bytes.count <= Self.maxEntryBytes else { throw DeliveryError.invalidArgument("the entry is \(bytes.count) bytes; at most \(Self.maxEntryBytes)") }
        try await requireSubscribers(recipients)
        let cursors = try await storing("") {
            try await store.deliver(recipients: recipients, entryKey: request.entryKey, source: entry.source, kind: entry.kind, entry: bytes, at: now())
        }
        for recipient in recipients { inboxBell.ring(recipient) }
        return .with { $0.cursors = cursors.mapValues { UInt64($0) } }
    }

    /// NOT_FOUND unless every ID is a subscriber security knows (terminated ones included: their inbox is kept).
    private func requireSubscribers(_ ids: [String]) async throws {
        let response: Atrium_V1_LookupSubscribersResponse
        do {
            response = try await security.lookupSubscribers(.with { $0.subscriberIds = ids }, options: .internalCall)
        } catch {
            logger.error("cannot look up inbox recipients", metadata: [LogKey.error: "\(error)"])
            throw DeliveryError.unavailable("the recipients cannot be checked right now; nothing was delivered, try again")
        }
        let known = Set(response.subscribers.map(\.subscriberID))
        if let unknown = ids.first(where: { !known.contains($0) }) { throw DeliveryError.subscriberNotFound(unknown) }
    }

    /// Entries after `after_cursor` (0: after the last acknowledged one), oldest first.
    func listInbox(_ request: Atrium_V1_ListInboxRequest, caller: VerifiedCaller) async throws -> Atrium_V1_ListInboxResponse {
        guard request.limit <= 1000 else { throw DeliveryError.invalidArgument("limit must be 1 to 1000") }
        let limit = request.limit == 0 ? 100 : Int(request.limit)
        let rows = try await storing(caller.requestID) {
            try await store.inbox(subscriberID: caller.subscriberID, after: Self.cursor(request.afterCursor), limit: limit)
        }
        return .with { $0.entries = rows.map(\.message) }
    }

    /// Entries after `after_cursor` (0: after the last acknowledged one), then each new one as it arrives.
    /// Ends with UNAVAILABLE when delivery shuts down; the watcher reconnects and resumes from its cursor.
    func watchInbox(_ request: Atrium_V1_WatchInboxRequest, caller: VerifiedCaller, writer: RPCWriter<Atrium_V1_InboxEntry>) async throws {
        let start = try Self.cursor(request.afterCursor)
        try await endingAtShutdown("delivery") {
            var rings = inboxBell.listen(caller.subscriberID).makeAsyncIterator()
            var after = start
            while true {
                let rows = try await storing(caller.requestID) { try await store.inbox(subscriberID: caller.subscriberID, after: after, limit: 100) }
                for row in rows {
                    try await writer.write(row.message)
                    after = row.cursor
                }
                if after == nil { after = try await storing(caller.requestID) { try await store.acknowledged(subscriberID: caller.subscriberID) } }
                if rows.count == 100 { continue }
                guard await rings.next() != nil else { return }
            }
        }
    }

    /// Acknowledges entries up to a cursor (clamped to the last entry); they are not delivered again.
    func ackInbox(_ request: Atrium_V1_AckInboxRequest, caller: VerifiedCaller) async throws -> Atrium_V1_AckInboxResponse {
        let cursor = try Self.cursor(request.upToCursor)
        guard let cursor else { throw DeliveryError.invalidArgument("up_to_cursor is required") }
        let acknowledged = try await storing(caller.requestID) { try await store.acknowledge(subscriberID: caller.subscriberID, upTo: cursor) }
        return .with { $0.acknowledgedCursor = UInt64(acknowledged) }
    }

    /// A cursor from a request: `nil` for 0 (the last acknowledged entry); INVALID_ARGUMENT past SQLite's range.
    private static func cursor(_ value: UInt64) throws -> Int64? {
        guard value != 0 else { return nil }
        guard let cursor = Int64(exactly: value) else { throw DeliveryError.invalidArgument("cursor \(value) is out of range") }
        return cursor
    }
}

extension InboxRow {
    var message: Atrium_V1_InboxEntry {
        var entry = (try? Atrium_V1_InboxEntry(serializedBytes: entry)) ?? .init()
        entry.cursor = UInt64(cursor)
        entry.source = source
        entry.kind = kind
        entry.createdAt = .init(date: createdAt)
        return entry
    }
}
