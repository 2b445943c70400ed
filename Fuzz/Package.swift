// swift-tools-version: 6.1
// The libFuzzer target over AtriumDICOM. Its own package, so that the sanitizers rebuild only the parser (with
// zlib and CharLS), not the gRPC stack. The parser's sources are the main package's, linked file by file into the fuzz
// target itself: libFuzzer only sees coverage from the module that holds the entry point. See README.md.
import PackageDescription

let package = Package(
    name: "AtriumFuzz",
    targets: [
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CCharLS", path: "Sources/CCharLS", pkgConfig: "charls", providers: [.apt(["libcharls-dev"])]),
        .executableTarget(name: "DICOMFuzz", dependencies: ["CZlib", "CCharLS"], swiftSettings: [.swiftLanguageMode(.v6)]),
    ]
)
