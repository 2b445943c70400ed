import ArgumentParser
import AtriumRuntime

/// The one executable: every Atrium process and every CLI verb.
@main
struct Atrium: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "atrium",
        abstract: "Atrium: a subscription network for medical imaging.",
        discussion: """
            Run the mesh with `atrium up`, one process with `atrium serve <service>`, and talk to a running
            network with the client verbs (`atrium images ...`). See README.md.
            """,
        version: AtriumVersion.text,
        subcommands: [
            Up.self, Serve.self, Health.self, Images.self, ProcessCommand.self, PrintCommand.self, PrinterCommand.self, InboxCommand.self, Share.self, Enroll.self, WhoAmI.self, UsageCommand.self, StatementCommand.self, Audit.self, Admin.self,
            SecurityCommand.self, PKI.self, DICOMCommand.self, Bench.self, Version.self,
        ]
    )

    static func main() async {
        // A process started by `atrium up`, the test mesh or anything else that holds its lifeline ends with it.
        Lifeline.watchIfAsked()
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// The release version of this build.
enum AtriumVersion {
    static let number = "0.1.0"
    static let text = "atrium \(number) (API atrium.v1)"
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version.")

    func run() {
        print(AtriumVersion.text)
    }
}
