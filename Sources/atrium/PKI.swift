import ArgumentParser
import AtriumRuntime

struct PKI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pki",
        abstract: "Development PKI.",
        subcommands: [Initialize.self]
    )

    struct Initialize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Create a development CA and one certificate per service in a directory, keeping what exists."
        )

        @Option(help: "The PKI directory.")
        var dir = "./var/pki"

        @Option(name: .customLong("host"), help: "An extra DNS name for every service certificate (repeatable).")
        var hosts: [String] = []

        func run() throws {
            let written = try DevelopmentPKI.ensure(directory: dir, extraHosts: hosts)
            print(written.isEmpty ? "PKI in \(dir) is complete; nothing written" : written.map { "wrote \($0)" }.joined(separator: "\n"))
        }
    }
}
