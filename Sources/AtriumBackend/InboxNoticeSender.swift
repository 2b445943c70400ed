import SwiftProtobuf
public import AtriumAPI
import AtriumCore
import AtriumRuntime
public import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging

/// An inbox entry a service owes some subscribers, as kept in its outbox until delivery has it.
public struct OwedNotice: Sendable {
    public var sequence: Int64
    public var recipients: [String]
    public var entryKey: String
    /// A serialized `InboxEntry`.
    public var entry: Data

    public init(sequence: Int64, recipients: [String], entryKey: String, entry: Data) {
        self.sequence = sequence
        self.recipients = recipients
        self.entryKey = entryKey
        self.entry = entry
    }
}

/// Delivers a service's notice outbox (the registry's share notices, processing's result notices) to inboxes through
/// `DeliveryInternal.Deliver`, oldest first, and clears each one delivery has. Delivery deduplicates by entry key, so a
/// notice resent after a lost reply arrives once. A notice delivery refuses as such (NOT_FOUND, INVALID_ARGUMENT: an
/// unknown recipient) is dropped with an error in the log, so it cannot block the ones behind it; other failures
/// are retried at the next round.
public struct InboxNoticeSender: Sendable {
    let pending: @Sendable (Int) async throws -> [OwedNotice]
    let remove: @Sendable (Int64) async throws -> Void
    let delivery: any Atrium_V1_DeliveryInternal.ClientProtocol
    let logger: Logger

    /// A sender reading the outbox with `pending` (oldest first, at most the given number) and clearing it with `remove`.
    public init(
        delivery: any Atrium_V1_DeliveryInternal.ClientProtocol,
        logger: Logger,
        pending: @escaping @Sendable (Int) async throws -> [OwedNotice],
        remove: @escaping @Sendable (Int64) async throws -> Void
    ) {
        self.delivery = delivery
        self.logger = logger
        self.pending = pending
        self.remove = remove
    }

    /// Delivers up to 100 pending notices; returns whether the outbox may hold more.
    public func deliver() async -> Bool {
        let notices: [OwedNotice]
        do {
            notices = try await pending(100)
        } catch {
            logger.error("cannot read the notice outbox", metadata: [LogKey.error: "\(error)"])
            return false
        }
        for notice in notices {
            do {
                _ = try await delivery.deliver(
                    .with {
                        $0.recipientIds = notice.recipients
                        $0.entryKey = notice.entryKey
                        $0.entry = (try? Atrium_V1_InboxEntry(serializedBytes: notice.entry)) ?? .init()
                    },
                    options: .internalCall
                )
            } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
                logger.error("an inbox notice cannot be delivered; dropped", metadata: [LogKey.error: "\(error)", "entry": "\(notice.entryKey)"])
            } catch {
                logger.warning("cannot deliver inbox notices yet; will retry", metadata: [LogKey.error: "\(error)", "pending": "\(notices.count)"])
                return false
            }
            do {
                try await remove(notice.sequence)
            } catch {
                logger.error("cannot clear a delivered notice from the outbox", metadata: [LogKey.error: "\(error)"])
                return false
            }
        }
        return notices.count == 100
    }
}
