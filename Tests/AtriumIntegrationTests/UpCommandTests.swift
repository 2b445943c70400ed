import AtriumCore
import AtriumTesting
import Foundation
import Testing

extension IntegrationTests {
    /// `atrium up`, as a user runs it.
    @Suite("atrium up", .serialized)
    struct UpCommandTests {
        @Test("starts every process, each answers its health check within 10 s, and Ctrl-C stops them all", .timeLimit(.minutes(2)))
        func upAndDown() async throws {
            let directory = try TemporaryDirectory(prefix: "atrium-up")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: AtriumBinary.path)
            process.arguments = ["up", "--ephemeral-ports", "--data-dir", directory.path]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            let started = ContinuousClock.now
            try process.run()
            defer { if process.isRunning { process.interrupt(); process.waitUntilExit() } }

            var text = ""
            let reader = output.fileHandleForReading
            while !text.contains("Press Ctrl-C"), ContinuousClock.now - started < .seconds(30) {
                let data = reader.availableData
                if data.isEmpty { break }
                text += String(decoding: data, as: UTF8.self)
            }
            let elapsed = ContinuousClock.now - started
            #expect(elapsed < .seconds(10), "up took \(elapsed)")
            let processLines = text.split(separator: "\n").filter { $0.contains("127.0.0.1:") && !$0.contains("export") }
            // Eight processes, and the gateway's second (client-certificate) listener.
            #expect(processLines.count == 9, "\(text)")
            for line in processLines {
                #expect(line.contains("SERVING"), "\(line)")
            }
            #expect(text.contains("export ATRIUM_API_KEY=atr_"))

            // Every listed process really answers `atrium health`.
            for line in processLines {
                let address = try #require(line.split(separator: " ").first { $0.hasPrefix("127.0.0.1:") })
                let status = try AtriumBinary.run(["health", "--pki-dir", "\(directory.path)/pki", String(address)])
                #expect(status.contains("SERVING"))
            }

            #expect(try AtriumBinary.ps(matching: directory.path).count == 8)
            process.interrupt()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            // No `atrium serve` child outlives `atrium up`.
            let survivors = try AtriumBinary.ps(matching: directory.path)
            #expect(survivors.isEmpty, "still running: \(survivors)")
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
