import AtriumAPI
import AtriumClient
import AtriumCore
import AtriumRuntime
import AtriumTesting
import Foundation
import GRDB
import GRPCCore
import GRPCNIOTransportHTTP2
import SwiftProtobuf
import Synchronization
import Testing
import AtriumTransport
import AtriumAssembly

/// The status of a WhoAmI call with `configuration` begun once the gateway's authorization cache (5 s) has
/// passed since `changed`: whatever the gateway had cached before then has expired, however slowly calls ran.
private func codeAfterCacheWindow(_ configuration: AtriumClientConfiguration, since changed: ContinuousClock.Instant) async -> RPCError.Code? {
    try? await Task.sleep(until: changed + .seconds(5) + .milliseconds(100))
    do {
        _ = try await AtriumClient.with(configuration) { atrium in try await atrium.account.whoAmI(.init(), metadata: atrium.metadata) }
        return nil
    } catch {
        return code(of: error)
    }
}

extension IntegrationTests {
    @Suite("Credentials, quotas, audit, rate limits and the processing pool", .serialized)
    struct ContractLifecycleTests {
        @Test("enrolment with a real CSR yields a certificate that authenticates over TLS; a token works once and expires")
        func enrolment() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let (id, _) = try await mesh.createSubscriber(name: "Clinic", kind: .hospital)
            let (token, shortLived) = try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                (
                    try await atrium.admin.createEnrollmentToken(.with { $0.subscriberID = id }, metadata: atrium.metadata).token,
                    try await atrium.admin.createEnrollmentToken(.with { $0.subscriberID = id; $0.validForSeconds = 1 }, metadata: atrium.metadata).token
                )
            }
            let ca = "\(mesh.pkiDirectory)/ca.pem"
            let identity = try await AtriumClient.enroll(gateway: mesh.mesh.gatewayAddress, caPath: ca, token: token, into: "\(mesh.directory.path)/identity")
            #expect(identity.subscriberID == id)
            let viaCertificate = AtriumClientConfiguration(gateway: mesh.mesh.gatewayMutualTLSAddress, caPath: ca, identity: identity)
            let me = try await AtriumClient.with(viaCertificate) { atrium in try await atrium.account.whoAmI(.init(), metadata: atrium.metadata) }
            #expect(me.subscriberID == id)

            await #expect { _ = try await AtriumClient.enroll(gateway: mesh.mesh.gatewayAddress, caPath: ca, token: token, into: "\(mesh.directory.path)/again") } throws: {
                code(of: $0) == .unauthenticated && "\($0)".contains("already been used")
            }
            try await Task.sleep(for: .milliseconds(1500))
            await #expect { _ = try await AtriumClient.enroll(gateway: mesh.mesh.gatewayAddress, caPath: ca, token: shortLived, into: "\(mesh.directory.path)/late") } throws: {
                code(of: $0) == .unauthenticated && "\($0)".contains("expired")
            }
            // A service's certificate is from the same CA but names no subscriber.
            var serviceIdentity = AtriumClientConfiguration(gateway: mesh.mesh.gatewayMutualTLSAddress, caPath: ca, apiKey: "")
            serviceIdentity.clientCertificate = (TLSFiles.service(.registry, in: mesh.pkiDirectory).certificatePath, TLSFiles.service(.registry, in: mesh.pkiDirectory).keyPath)
            await #expect { _ = try await AtriumClient.with(serviceIdentity) { try await $0.account.whoAmI(.init(), metadata: $0.metadata) } } throws: {
                code(of: $0) == .unauthenticated
            }
        }

        @Test("a revoked key and a terminated subscriber's certificate are refused within 5 s; its images are kept")
        func revocation() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let (id, key) = try await mesh.createSubscriber(name: "Leaving", kind: .hospital)
            let token = try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                try await atrium.admin.createEnrollmentToken(.with { $0.subscriberID = id }, metadata: atrium.metadata).token
            }
            let ca = "\(mesh.pkiDirectory)/ca.pem"
            let identity = try await AtriumClient.enroll(gateway: mesh.mesh.gatewayAddress, caPath: ca, token: token, into: "\(mesh.directory.path)/identity")
            let viaCertificate = AtriumClientConfiguration(gateway: mesh.mesh.gatewayMutualTLSAddress, caPath: ca, identity: identity)
            let file = "\(mesh.directory.path)/kept.dcm"
            try Fixtures.writePartTenFile(at: file, payloadBytes: 5000)
            let image = try await AtriumClient.with(viaCertificate) { try await $0.registerImage(file: file).imageID }

            // Both credentials work, and their decisions are now cached at the gateway.
            _ = try await AtriumClient.with(mesh.clientConfiguration(apiKey: key)) { try await $0.account.whoAmI(.init(), metadata: $0.metadata) }
            let prefix = String(key.split(separator: "_")[1])
            try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                _ = try await atrium.admin.revokeApiKey(.with { $0.prefix = prefix }, metadata: atrium.metadata)
            }
            let keyCode = await codeAfterCacheWindow(mesh.clientConfiguration(apiKey: key), since: .now)
            #expect(keyCode == .unauthenticated, "a revoked key was still accepted 5 s after the revocation")
            _ = try await AtriumClient.with(viaCertificate) { try await $0.account.whoAmI(.init(), metadata: $0.metadata) }

            try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                _ = try await atrium.admin.terminateSubscriber(.with { $0.subscriberID = id }, metadata: atrium.metadata)
            }
            let certificateCode = await codeAfterCacheWindow(viaCertificate, since: .now)
            #expect(certificateCode == .unauthenticated, "a terminated subscriber's certificate was still accepted 5 s later")
            // Registered images stay, for the operator's retention decision.
            let record = try await AtriumClient.with(mesh.clientConfiguration()) { try await $0.image(id: image) }
            #expect(record.registrantID == id)
        }

        @Test("a stream is paced at the contract's byte rate, and a key revoked mid-stream ends it before the image is through")
        func openStream() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let (id, key) = try await mesh.createSubscriber(name: "Streaming", kind: .hospital)
            let file = "\(mesh.directory.path)/big.dcm"
            try Fixtures.writePartTenFile(at: file, payloadBytes: 20 << 20)
            let image = try await AtriumClient.with(mesh.clientConfiguration(apiKey: key)) { try await $0.registerImage(file: file).imageID }
            let rate: UInt64 = 2_000_000
            try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                let current = try await atrium.admin.getSubscriber(.with { $0.subscriberID = id }, metadata: atrium.metadata).contract
                var limited = current
                limited.bytesPerSecond = rate
                limited.byteBurst = rate
                _ = try await atrium.admin.setContract(.with { $0.subscriberID = id; $0.contract = limited }, metadata: atrium.metadata)
            }
            let received = Atomic<Int>(0)
            let started = ContinuousClock.now
            let prefix = String(key.split(separator: "_")[1])
            async let revoke: Void = {
                try await Task.sleep(for: .seconds(1))
                try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                    _ = try await atrium.admin.revokeApiKey(.with { $0.prefix = prefix }, metadata: atrium.metadata)
                }
            }()
            await #expect {
                try await AtriumClient.with(mesh.clientConfiguration(apiKey: key)) { atrium in
                    try await atrium.fetchImage(id: image) { data in received.add(data.count, ordering: .relaxed) }
                }
            } throws: { code(of: $0) == .unauthenticated }
            try await revoke
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            // Paced: never more than the burst plus the rate over the time the stream ran (plus one 1 MiB message).
            let bytes = Double(received.load(ordering: .relaxed))
            #expect(bytes <= Double(rate) * (1 + seconds) + Double(1 << 20), "\(bytes) bytes in \(seconds) s")
            #expect(bytes < Double(20 << 20), "the whole image got through")
        }

        @Test("past the quota a registration is refused and stores nothing; usage is the exact sum; 80% warns once")
        func quota() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let payload = 40_000
            var files: [String] = []
            for (index, seed) in [1, 2, 3, 99].enumerated() {
                files.append("\(mesh.directory.path)/q\(index).dcm")
                try Fixtures.writePartTenFile(at: files[index], payloadBytes: payload, seed: UInt64(seed))
            }
            let sizes = try files.map { try #require(try FileManager.default.attributesOfItem(atPath: $0)[.size] as? UInt64) }
            let size = sizes[0]
            #expect(sizes.allSatisfy { $0 == size })
            let (_, key) = try await mesh.createSubscriber(
                name: "Small",
                kind: .hospital,
                contract: .with { $0.storageQuotaBytes = size * 7 / 2 }
            )
            let blobs = "\(mesh.directory.path)/registry/blobs"
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: key)) { atrium in
                for file in files.prefix(3) {
                    _ = try await atrium.registerImage(file: file)
                }
                let stored = try storedBlobs(in: blobs)
                let file = files[3]
                await #expect { _ = try await atrium.registerImage(file: file) } throws: { error in
                    code(of: error) == .resourceExhausted && "\(error)".contains("\(size * 7 / 2)-byte quota")
                }
                #expect(try storedBlobs(in: blobs) == stored, "a refused upload left a blob behind")
                // Settlements reach security in the background; until then the bytes count as reserved.
                var usage = try await atrium.account.getUsage(.init(), metadata: atrium.metadata)
                #expect(usage.storageUsedBytes + usage.storageReservedBytes == 3 * size)
                let deadline = ContinuousClock.now + .seconds(5)
                while usage.storageReservedBytes > 0, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                    usage = try await atrium.account.getUsage(.init(), metadata: atrium.metadata)
                }
                #expect(usage.storageUsedBytes == 3 * size)
                #expect(usage.storageReservedBytes == 0)
                #expect(usage.storageWarning)
                let notifications = try await atrium.account.listNotifications(.init(), metadata: atrium.metadata).notifications
                #expect(notifications.filter { $0.kind == "storage.warning" }.count == 1)
            }
        }

        @Test("every call leaves an audit entry; editing one row in SQLite makes VerifyAuditLog report that row")
        func auditChain() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let owner = try await mesh.createSubscriber(name: "Owner", kind: .hospital)
            let file = "\(mesh.directory.path)/a.dcm"
            try Fixtures.writePartTenFile(at: file, payloadBytes: 1000)
            let image = try await AtriumClient.with(mesh.clientConfiguration(apiKey: owner.key)) { try await $0.registerImage(file: file).imageID }
            try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                try await atrium.fetchImage(id: image) { _ in }
                try await Task.sleep(for: .milliseconds(500))
                let fetches = try await atrium.admin.queryAuditLog(.with { $0.resourceID = image; $0.method = "atrium.v1.Delivery/Fetch" }, metadata: atrium.metadata)
                #expect(fetches.entries.count == 1)
                #expect(fetches.entries.first?.resourceOwnerID == owner.id)
                let verified = try await atrium.admin.verifyAuditLog(.init(), metadata: atrium.metadata)
                #expect(verified.intact && verified.entriesChecked > 5)
            }
            let accesses = try await AtriumClient.with(mesh.clientConfiguration(apiKey: owner.key)) { atrium in
                try await atrium.account.listAccesses(.init(), metadata: atrium.metadata).entries
            }
            #expect(accesses.contains { $0.method == "atrium.v1.Delivery/Fetch" && $0.resourceID == image && $0.subscriberID != owner.id })

            let tampered: Int64 = 3
            let queue = try DatabaseQueue(path: mesh.securityDatabasePath)
            try await queue.write { db in
                try db.execute(sql: "DROP TRIGGER audit_no_update")
                try db.execute(sql: "UPDATE audit SET outcome = 'ok', subscriber_id = 'sub_someone_else' WHERE sequence = ?", arguments: [tampered])
            }
            let verified = try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                try await atrium.admin.verifyAuditLog(.init(), metadata: atrium.metadata)
            }
            #expect(!verified.intact)
            #expect(verified.firstBrokenSequence == UInt64(tampered))
        }

        @Test("with a limit of N requests/s, a burst of 10·N is cut to the limit with RESOURCE_EXHAUSTED")
        func rateLimit() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let limit = 20
            let (_, key) = try await mesh.createSubscriber(
                name: "Busy",
                kind: .hospital,
                contract: .with { $0.requestsPerSecond = Double(limit); $0.requestBurst = UInt32(limit) }
            )
            try await ClientFactory.withClient(to: mesh.mesh.gatewayAddress, security: .tls(caPath: "\(mesh.pkiDirectory)/ca.pem")) { client in
                let whoAmI = Atrium_V1_Account.Method.WhoAmI.descriptor
                // Warm the connection and the authorization cache, then let the bucket refill.
                #expect(await rawCall(client, whoAmI, metadata: ["authorization": "Bearer \(key)"]) == nil)
                try await Task.sleep(for: .seconds(1.5))
                let started = ContinuousClock.now
                let codes = await withTaskGroup(of: RPCError.Code?.self) { group in
                    for _ in 0..<(10 * limit) {
                        group.addTask { await rawCall(client, whoAmI, metadata: ["authorization": "Bearer \(key)"]) }
                    }
                    return await group.reduce(into: [RPCError.Code?]()) { $0.append($1) }
                }
                let elapsed = ContinuousClock.now - started
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
                let accepted = codes.filter { $0 == nil }.count
                let refused = codes.filter { $0 == .resourceExhausted }.count
                #expect(accepted + refused == 10 * limit, "other codes: \(codes.filter { $0 != nil && $0 != .resourceExhausted })")
                // The bucket holds `limit` tokens and refills at `limit`/s while the burst is in flight.
                let allowed = Double(limit) * (1 + seconds)
                #expect(Double(accepted) <= allowed * 1.1 + 1, "accepted \(accepted) in \(seconds) s, allowed \(allowed)")
                #expect(Double(accepted) >= Double(limit) * 0.9, "accepted \(accepted)")
            }
        }

        @Test("an address that keeps presenting unknown keys is cut off with RESOURCE_EXHAUSTED; a cached credential is not")
        func failedAuthenticationLimit() async throws {
            // A burst of 3 failures, refilled at 1/s; the operator's decision is cached for a minute.
            let mesh = try await TestMesh(
                split: false,
                processingInstances: 1,
                environment: [
                    "ATRIUM_GATEWAY_AUTH_FAILURES_PER_SECOND": "1",
                    "ATRIUM_GATEWAY_AUTH_FAILURE_BURST": "3",
                    "ATRIUM_GATEWAY_AUTH_CACHE_MS": "60000",
                    "ATRIUM_AUTH_CACHE_TTL_MS": "60000",
                ]
            )
            defer { mesh.stop() }
            try await ClientFactory.withClient(to: mesh.mesh.gatewayAddress, security: .tls(caPath: "\(mesh.pkiDirectory)/ca.pem")) { client in
                let whoAmI = Atrium_V1_Account.Method.WhoAmI.descriptor
                #expect(await rawCall(client, whoAmI, metadata: ["authorization": "Bearer \(mesh.operatorKey)"]) == nil)
                // The bucket only fills with time, so the first three failures are always asked of security.
                var codes: [RPCError.Code?] = []
                for attempt in 0..<50 {
                    let unknown = "atr_aaaaaaaaaaaa_" + String(repeating: "b", count: 30) + String(format: "%02d", attempt)
                    codes.append(await rawCall(client, whoAmI, metadata: ["authorization": "Bearer \(unknown)"]))
                    if codes.last == .resourceExhausted { break }
                }
                #expect(Array(codes.prefix(3)) == [.unauthenticated, .unauthenticated, .unauthenticated])
                #expect(codes.last == .resourceExhausted, "codes: \(codes)")
                #expect(Set(codes.dropLast()) == [.unauthenticated])
                // The operator's decision is in the cache: the cut-off address still gets its answer.
                #expect(await rawCall(client, whoAmI, metadata: ["authorization": "Bearer \(mesh.operatorKey)"]) == nil)
            }
        }

        @Test("with one of two processing instances killed, calls keep succeeding; once back, it is used again")
        func pool() async throws {
            let mesh = try await TestMesh(processingInstances: 2, environment: ["ATRIUM_PROCESSING_PROBE_MS": "200"])
            defer { mesh.stop() }
            let first = LocalMesh.Instance(.processing, 1)
            let run = Atrium_V1_Processing.Method.Run.descriptor
            let operatorKey: Metadata = ["authorization": "Bearer \(mesh.operatorKey)"]
            try await ClientFactory.withClient(to: mesh.mesh.gatewayAddress, security: .tls(caPath: "\(mesh.pkiDirectory)/ca.pem")) { client in
                // Reaching an instance is INVALID_ARGUMENT (the empty request has no header); failing to is
                // UNAVAILABLE. The gateway puts an instance in rotation after its first health probe, just after start-up.
                let deadline = ContinuousClock.now + .seconds(10)
                while await rawCall(client, run, metadata: operatorKey) != .invalidArgument, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                for _ in 0..<10 { #expect(await rawCall(client, run, metadata: operatorKey) == .invalidArgument) }
                mesh.mesh.kill(first)
                for index in 0..<30 {
                    let result = await rawCall(client, run, metadata: operatorKey)
                    #expect(result == .invalidArgument, "call \(index) after the kill: \(String(describing: result))")
                }
                try await mesh.mesh.restart(first)
                try await Task.sleep(for: .seconds(1))
                for _ in 0..<40 { _ = await rawCall(client, run, metadata: operatorKey) }
            }
            let served = try await ClientFactory.withClient(
                to: mesh.mesh.address(of: first),
                security: .mutualTLS(.service(.gateway, in: mesh.pkiDirectory))
            ) { client in
                try await Atrium_V1_ProcessingInternal.Client(wrapping: client).getLoad(.init()).callsServed
            }
            #expect(served > 0, "the restarted instance got no calls")
        }
    }
}

/// The blob files under a blob store root (excluding its temp directory).
private func storedBlobs(in root: String) throws -> Int {
    guard let walker = FileManager.default.enumerator(atPath: root) else { return 0 }
    return walker.compactMap { $0 as? String }.filter { !$0.hasPrefix("tmp") && $0.split(separator: "/").count == 3 }.count
}
