import AtriumCore
import AtriumRuntime
import AtriumTesting
import Foundation
import Testing

extension IntegrationTests {
    /// `atrium up`, as a user runs it.
    @Suite("atrium up", .serialized)
    struct UpCommandTests {
        /// Starts `atrium up` on ephemeral ports in `directory` and reads its output until it is ready (or ends).
        private static func startUp(in directory: TemporaryDirectory, split: Bool) throws -> (process: Process, text: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: AtriumBinary.path)
            process.arguments = ["up", "--ephemeral-ports", "--data-dir", directory.path] + (split ? ["--split"] : [])
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            // Tied to this test process too, so that a crashed test run leaves no mesh behind.
            Lifeline.tie(process)
            let started = ContinuousClock.now
            try process.run()
            var text = ""
            let reader = output.fileHandleForReading
            // How long start-up takes is for `make bench`; this only stops waiting for an `up` that hangs.
            while !text.contains("Press Ctrl-C"), ContinuousClock.now - started < .seconds(120) {
                let data = reader.availableData
                if data.isEmpty { break }
                text += String(decoding: data, as: UTF8.self)
            }
            return (process, text)
        }

        @Test("starts every process (one, or one per service with --split), each answers its health check, and Ctrl-C stops them all", arguments: [false, true])
        func upAndDown(split: Bool) async throws {
            let directory = try TemporaryDirectory(prefix: "atrium-up")
            let (process, text) = try Self.startUp(in: directory, split: split)
            defer { if process.isRunning { process.interrupt(); process.waitUntilExit() } }
            let listed = text.split(separator: "\n").filter { $0.contains("127.0.0.1:") && !$0.contains("export") }
            // One process, or eight; the gateway's second (client-certificate) listener; delivery's data plane (HTTPS,
            // its own health answer), and split, the registry's upload plane.
            let processes = split ? 8 : 1
            #expect(listed.count == processes + (split ? 3 : 2), "\(text)")
            for line in listed {
                #expect(line.contains("SERVING"), "\(line)")
            }
            let processLines = listed.filter { !$0.contains("data-plane") && !$0.contains("upload-plane") }
            #expect(text.contains("export ATRIUM_API_KEY=atr_"))

            // Every listed process really answers `atrium health`.
            for line in processLines {
                let address = try #require(line.split(separator: " ").first { $0.hasPrefix("127.0.0.1:") })
                let status = try AtriumBinary.run(["health", "--pki-dir", "\(directory.path)/pki", String(address)])
                #expect(status.contains("SERVING"))
            }

            #expect(try AtriumBinary.ps(matching: directory.path).count == processes)
            process.interrupt()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            // No `atrium serve` child outlives `atrium up`.
            let survivors = try AtriumBinary.ps(matching: directory.path)
            #expect(survivors.isEmpty, "still running: \(survivors)")
        }

        @Test("killing `atrium up` with SIGKILL leaves no `atrium serve` process behind", arguments: [false, true])
        func parentKilled(split: Bool) async throws {
            let directory = try TemporaryDirectory(prefix: "atrium-up-kill")
            let (process, text) = try Self.startUp(in: directory, split: split)
            #expect(text.contains("Press Ctrl-C"), "\(text)")
            let children = try AtriumBinary.ps(matching: directory.path)
            #expect(children.count == (split ? 8 : 1))
            // No chance to clean up: the children must notice on their own.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            // They notice within half a second, stop gracefully (SIGTERM to themselves), and exit after 15 s at the
            // latest; the 60 s here only stops waiting for a test that failed.
            let deadline = ContinuousClock.now + .seconds(60)
            var survivors = children
            while !survivors.isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                survivors = try AtriumBinary.ps(matching: directory.path)
            }
            #expect(survivors.isEmpty, "still running after their parent was killed: \(survivors)")
        }
    }
}

extension AtriumBinary {
    /// PIDs of processes whose environment names `marker` (the test's data directory).
    static func ps(matching marker: String) throws -> [Int32] {
        var result: [Int32] = []
        for entry in try FileManager.default.contentsOfDirectory(atPath: "/proc") {
            guard let pid = Int32(entry), let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            if String(decoding: environ, as: UTF8.self).contains("ATRIUM_DATA_DIR=\(marker)") { result.append(pid) }
        }
        return result
    }
}
