import SwiftProtobuf
public import AtriumAPI
import AtriumCore
public import AtriumDICOM
import AtriumRuntime
import Foundation
import GRPCCore
import Logging
import ServiceLifecycle
import AtriumBackend

/// Print jobs: a terminal hands a film layout to a printer and is free at once; the printer's watch stream
/// receives the job, the printer fetches the images itself (the job is the capability that allows it, while
/// open), composes the sheet and reports the outcome.
extension DeliveryService {
    /// The most images a film box may hold (STANDARD\10,10).
    static let maxImagesPerJob = 100

    /// Validates and stores a job, then wakes the printer. Returns once the job is durable: only index lookups
    /// happen here (the printer, each image's visibility), never image bytes.
    func submitPrintJob(_ request: Atrium_V1_SubmitPrintJobRequest, caller: VerifiedCaller) async throws -> Atrium_V1_PrintJob {
        let started = ContinuousClock.now
        let layout = try Self.validatePrintJob(request)
        // The printer and every image (visible to the submitter now; the printer's fetches re-check it later),
        // looked up together.
        async let printer: Void = requirePrinter(request.printerID, requestID: caller.requestID)
        var refusals: [String: String] = [:]
        let ids = Array(Set(request.imageIds))
        let records = try await resolve(ids, for: caller, refusals: &refusals)
        try await printer
        if let missing = ids.first(where: { records[$0] == nil }) { throw DeliveryError.imageNotFound(missing) }
        let checked = ContinuousClock.now
        var filmBox = request.filmBox
        filmBox.imageDisplayFormat = "STANDARD\\\(layout.columns),\(layout.rows)"
        let job = PrintJobRow(
            id: Identifier.make(prefix: "prt"), sequence: 0, submitterID: caller.subscriberID, submitter: try caller.message.serializedBytes(),
            printerID: request.printerID, filmBox: try filmBox.serializedBytes(), imageIDs: request.imageIds.joined(separator: " "),
            copies: Int(max(1, request.copies)), state: PrintJobState.pending.rawValue, failureReason: "", submittedAt: now(), completedAt: nil
        )
        let stored = try await storing(caller.requestID) { try await store.insert(job) }
        printerBell.ring(stored.printerID)
        recordJob(caller, Atrium_V1_Delivery.Method.SubmitPrintJob.descriptor, stored)
        logger.info(
            "print job submitted",
            metadata: [
                "job.id": "\(stored.id)", "printer.id": "\(stored.printerID)", "ms.check": "\((checked - started).wholeMilliseconds)",
                "ms.store": "\((ContinuousClock.now - checked).wholeMilliseconds)", LogKey.requestID: "\(caller.requestID)",
            ]
        )
        return stored.message
    }

    /// Checks the film box terms, the images against the layout, copies and windows; returns the layout.
    static func validatePrintJob(_ request: Atrium_V1_SubmitPrintJobRequest) throws -> FilmLayout {
        guard !request.printerID.isEmpty else { throw DeliveryError.invalidArgument("printer_id is required") }
        let box = request.filmBox
        let layout: FilmLayout
        do {
            layout = try FilmLayout(box)
        } catch {
            throw DeliveryError.invalidArgument("film_box: \(error)")
        }
        guard !request.imageIds.isEmpty else { throw DeliveryError.invalidArgument("image_ids is empty") }
        guard request.imageIds.count <= layout.capacity else {
            throw DeliveryError.invalidArgument("\(request.imageIds.count) images do not fit \(box.imageDisplayFormat) (\(layout.capacity) cells)")
        }
        guard request.imageIds.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 128 }) else {
            throw DeliveryError.invalidArgument("image_ids must be 1 to 128 bytes each")
        }
        guard request.copies <= 99 else { throw DeliveryError.invalidArgument("copies must be 1 to 99") }
        guard box.windows.isEmpty || box.windows.count == request.imageIds.count else {
            throw DeliveryError.invalidArgument("film_box.windows has \(box.windows.count) entries for \(request.imageIds.count) images: give none or one per image")
        }
        for (index, window) in box.windows.enumerated() where !(window.center.isFinite && window.width.isFinite && window.width >= 1) {
            throw DeliveryError.invalidArgument("film_box.windows[\(index)]: the centre must be finite and the width at least 1")
        }
        return layout
    }

    /// NOT_FOUND unless `id` is an active subscriber whose contract has the `print` role.
    private func requirePrinter(_ id: String, requestID: String) async throws {
        let response: Atrium_V1_LookupSubscribersResponse
        do {
            response = try await security.lookupSubscribers(.with { $0.subscriberIds = [id] }, options: .internalCall)
        } catch {
            logger.error("cannot look up a printer", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw DeliveryError.unavailable("the printer cannot be checked right now; nothing was submitted, try again")
        }
        guard let printer = response.subscribers.first(where: { $0.subscriberID == id }), printer.status == .active,
            printer.contract.roles.contains(.print)
        else { throw DeliveryError.printerNotFound(id) }
    }

    /// A job as its submitter or its printer sees it; NOT_FOUND for anyone else.
    func printJob(_ id: String, caller: VerifiedCaller) async throws -> Atrium_V1_PrintJob {
        guard let job = try await storing(caller.requestID, { try await store.job(id: id) }),
            job.submitterID == caller.subscriberID || job.printerID == caller.subscriberID
        else { throw DeliveryError.jobNotFound(id) }
        return job.message
    }

    /// The calling printer's job `id`, if it is still open: the capability a print fetch needs.
    func openJob(_ id: String, printer: VerifiedCaller) async throws -> PrintJobRow {
        guard let job = try await storing(printer.requestID, { try await store.job(id: id) }), job.printerID == printer.subscriberID else {
            throw DeliveryError.jobNotFound(id)
        }
        guard PrintJobState.open.map(\.rawValue).contains(job.state) else {
            throw DeliveryError.failedPrecondition("print job '\(id)' is closed: its images can no longer be fetched with it")
        }
        return job
    }

    /// Streams the calling printer's open jobs in submission order (each is marked dispatched as it is sent),
    /// then each new one as it is submitted. Jobs dispatched but not completed are sent again after a
    /// reconnect. Ends with UNAVAILABLE when delivery shuts down, so the printer reconnects elsewhere.
    func watchPrintJobs(caller: VerifiedCaller, writer: RPCWriter<Atrium_V1_PrintJob>) async throws {
        try await endingAtShutdown("delivery") {
            var rings = printerBell.listen(caller.subscriberID).makeAsyncIterator()
            var last: Int64 = 0
            while true {
                let jobs = try await storing(caller.requestID) { try await store.openJobs(printerID: caller.subscriberID, after: last) }
                for job in jobs {
                    let sent = try await storing(caller.requestID) {
                        try await store.transition(jobID: job.id, from: [.pending], to: .dispatched) ?? job
                    }
                    // A job completed between the read and now is not sent.
                    if PrintJobState.open.map(\.rawValue).contains(sent.state) { try await writer.write(sent.message) }
                    last = job.sequence
                }
                if jobs.count == 100 { continue }
                guard await rings.next() != nil else { return }
            }
        }
    }

    /// Records a printer's outcome; closes the job's fetch capability.
    func completePrintJob(_ request: Atrium_V1_CompletePrintJobRequest, caller: VerifiedCaller) async throws -> Atrium_V1_PrintJob {
        guard !request.jobID.isEmpty else { throw DeliveryError.invalidArgument("job_id is required") }
        let reason = request.failureReason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard request.printed || !reason.isEmpty else { throw DeliveryError.invalidArgument("failure_reason is required when printed is false") }
        guard reason.utf8.count <= 1024 else { throw DeliveryError.invalidArgument("failure_reason is at most 1024 bytes") }
        _ = try await openJob(request.jobID, printer: caller)
        let state: PrintJobState = request.printed ? .printed : .failed
        guard let job = try await storing(caller.requestID, {
            try await store.transition(jobID: request.jobID, from: PrintJobState.open, to: state, failureReason: request.printed ? "" : reason, completedAt: now())
        }) else {
            throw DeliveryError.failedPrecondition("print job '\(request.jobID)' is already closed")
        }
        recordJob(caller, Atrium_V1_Delivery.Method.CompletePrintJob.descriptor, job)
        logger.info("print job completed", metadata: ["job.id": "\(job.id)", "printed": "\(request.printed)", LogKey.requestID: "\(caller.requestID)"])
        return job.message
    }

    private func recordJob(_ caller: VerifiedCaller, _ method: MethodDescriptor, _ job: PrintJobRow) {
        audit.record(method, caller: caller, resource: job.id, owner: job.submitterID, at: now())
    }

    /// Runs a database operation; a failure is logged with the request ID and reported as UNAVAILABLE.
    func storing<T: Sendable>(_ requestID: String, _ work: () async throws -> T) async throws -> T {
        do {
            return try await work()
        } catch let error as DeliveryError {
            throw error
        } catch {
            logger.error("delivery storage failed", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw DeliveryError.storageUnavailable()
        }
    }
}

extension PrintJobRow {
    var message: Atrium_V1_PrintJob {
        .with {
            $0.jobID = id
            $0.submitterID = submitterID
            $0.printerID = printerID
            $0.filmBox = (try? Atrium_V1_FilmBox(serializedBytes: filmBox)) ?? .init()
            $0.imageIds = images
            $0.copies = UInt32(copies)
            $0.state = Atrium_V1_PrintJob.State(rawValue: state) ?? .unspecified
            $0.failureReason = failureReason
            $0.submittedAt = .init(date: submittedAt)
            if let completedAt { $0.completedAt = .init(date: completedAt) }
        }
    }
}

extension FilmLayout {
    /// The layout a print job's film box describes (Basic Film Box terms).
    public init(_ box: Atrium_V1_FilmBox) throws(FilmError) {
        try self.init(
            imageDisplayFormat: box.imageDisplayFormat, filmSizeID: box.filmSizeID, orientation: box.filmOrientation,
            magnificationType: box.magnificationType
        )
    }
}
