import ArgumentParser
import AtriumAPI
import AtriumDICOM
import Foundation

/// `atrium dicom`: local tools over DICOM files, with the same code the services run.
struct DICOMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dicom",
        abstract: "Local DICOM tools (no network).",
        subcommands: [Transcode.self]
    )

    struct Transcode: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-encode a DICOM Part 10 file losslessly, as delivery does.",
            discussion: "Encodings: explicit-le, jpeg-ls (JPEG-LS lossless) or deflate. Prints the output's transfer syntax and size."
        )
        @Argument(help: "The input file.") var input: String
        @Option(name: .shortAndLong, help: "The output file.") var output: String
        @Option(help: "explicit-le, jpeg-ls or deflate.") var encoding: Atrium_V1_Encoding = .jpegLs

        func run() throws {
            let target: Transcoder.Target
            switch encoding {
            case .explicitLe: target = .explicitLittleEndian
            case .jpegLs: target = .jpegLSLossless
            case .deflate: target = .deflatedExplicitLittleEndian
            default: throw ValidationError("--encoding must be explicit-le, jpeg-ls or deflate")
            }
            let source = [UInt8](try Data(contentsOf: URL(fileURLWithPath: input)))
            let started = ContinuousClock.now
            let (bytes, syntax) = try Transcoder.transcode(source, to: target)
            let elapsed = ContinuousClock.now - started
            try Data(bytes).write(to: URL(fileURLWithPath: output), options: .atomic)
            print("\(output)  \(syntax)  \(bytes.count) bytes (from \(source.count))  \(elapsed)")
        }
    }
}
