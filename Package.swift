// swift-tools-version: 6.1
//
// Atrium: a subscription network for medical imaging.
// One executable (`atrium`) and a handful of focused library modules; see docs/architecture.md.

import PackageDescription

let settings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let grpcCore: Target.Dependency = .product(name: "GRPCCore", package: "grpc-swift-2")
let grpcInProcess: Target.Dependency = .product(name: "GRPCInProcessTransport", package: "grpc-swift-2")
let grpcHTTP2: Target.Dependency = .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport")
let grpcProtobuf: Target.Dependency = .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf")
let swiftProtobuf: Target.Dependency = .product(name: "SwiftProtobuf", package: "swift-protobuf")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let lifecycle: Target.Dependency = .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let crypto: Target.Dependency = .product(name: "Crypto", package: "swift-crypto")
let x509: Target.Dependency = .product(name: "X509", package: "swift-certificates")
let grdb: Target.Dependency = .product(name: "GRDB", package: "GRDB.swift")
let asn1: Target.Dependency = .product(name: "SwiftASN1", package: "swift-asn1")
// The byte path (HTTPS range requests for image bytes): HTTP/1.1 and TLS on swift-nio, which gRPC already brings.
let nio: [Target.Dependency] = [
    .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
]
let nioFoundation: Target.Dependency = .product(name: "NIOFoundationCompat", package: "swift-nio")

let package = Package(
    name: "Atrium",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "atrium", targets: ["atrium"]),
        .library(name: "AtriumClient", targets: ["AtriumClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/grpc/grpc-swift-2.git", exact: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", exact: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", exact: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // Generated protobuf messages and gRPC stubs only. `make proto` regenerates them.
        .target(name: "AtriumAPI", dependencies: [grpcCore, grpcProtobuf, swiftProtobuf], swiftSettings: settings),
        // IDs, errors and their status mapping, configuration parsing, logging keys.
        .target(name: "AtriumCore", dependencies: [logging, crypto], swiftSettings: settings),
        // zlib, from Debian's zlib1g-dev (deflated transfer syntax; PNG thumbnails).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // CharLS, from Debian's libcharls-dev (JPEG-LS pixel data, decoded and encoded).
        .systemLibrary(name: "CCharLS", path: "Sources/CCharLS", pkgConfig: "charls", providers: [.apt(["libcharls-dev"])]),
        // The DICOM reader and writer: pure Swift plus zlib and CharLS, no gRPC.
        .target(name: "AtriumDICOM", dependencies: ["CZlib", "CCharLS"], swiftSettings: settings),
        // Float32 images and volumes, filters and projections (ARCHITECTURE.md §6): pure Swift, no gRPC.
        // Optimised in debug builds too: its SIMD kernels run hundreds of times slower unoptimised, which would make
        // the processing tests (debug binaries) measure the compiler's debug mode instead of the behaviour.
        .target(name: "AtriumImaging", dependencies: [], swiftSettings: settings + [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        // Content-addressed blob store and database plumbing.
        .target(name: "AtriumStorage", dependencies: ["AtriumCore", grdb, crypto], swiftSettings: settings),
        // How an Atrium process connects: the gRPC client factory, TLS files, transport settings, and what a
        // certificate says about its holder. The SDK's only piece of the runtime: no database, no service lifecycle.
        .target(name: "AtriumTransport", dependencies: ["AtriumCore", grpcCore, grpcHTTP2, crypto, x509, asn1], swiftSettings: settings),
        // Process bootstrap shared by every service: servers, internal clients and in-process links, PKI, health,
        // caller identity, configuration.
        .target(
            name: "AtriumRuntime",
            dependencies: [
                "AtriumAPI", "AtriumCore", "AtriumTransport", grpcCore, grpcHTTP2, swiftProtobuf, logging, lifecycle, crypto, x509, asn1,
            ],
            swiftSettings: settings
        ),
        // Backend plumbing: the usage outbox and sender, the budget gate, inbox notices, the audit trail.
        .target(
            name: "AtriumBackend",
            dependencies: ["AtriumAPI", "AtriumCore", "AtriumRuntime", "AtriumStorage", grpcCore, grpcHTTP2, swiftProtobuf, grdb, logging, lifecycle],
            swiftSettings: settings
        ),
        // The processing instances a gateway spreads calls over and a coordinating instance spreads shards over.
        .target(
            name: "AtriumPool",
            dependencies: ["AtriumAPI", "AtriumCore", "AtriumRuntime", "AtriumTransport", grpcCore, grpcHTTP2, swiftProtobuf, logging, lifecycle],
            swiftSettings: settings
        ),
        .target(name: "AtriumSecurity", dependencies: ["AtriumTransport", swiftProtobuf, "AtriumAPI", "AtriumCore", "AtriumRuntime", "AtriumStorage", grpcCore, grdb, crypto, logging, x509, asn1], swiftSettings: settings),
        .target(name: "AtriumRegistry", dependencies: ["AtriumTransport", "AtriumBackend", swiftProtobuf, "AtriumAPI", "AtriumCore", "AtriumDICOM", "AtriumRuntime", "AtriumStorage", grpcCore, grdb, crypto, logging], swiftSettings: settings),
        .target(name: "AtriumDelivery", dependencies: ["AtriumTransport", "AtriumBackend", swiftProtobuf, "AtriumAPI", "AtriumCore", "AtriumDICOM", "AtriumRuntime", "AtriumStorage", grpcCore, grpcHTTP2, grdb, crypto, logging, lifecycle] + nio, swiftSettings: settings),
        .target(
            name: "AtriumProcessing",
            dependencies: ["AtriumBackend", "AtriumPool", swiftProtobuf, "AtriumAPI", "AtriumCore", "AtriumDICOM", "AtriumImaging", "AtriumRuntime", "AtriumStorage", grpcCore, grpcHTTP2, grpcProtobuf, grdb, crypto, logging, lifecycle],
            swiftSettings: settings
        ),
        .target(name: "AtriumCatalog", dependencies: ["AtriumAPI", "AtriumRuntime", grpcCore], swiftSettings: settings),
        .target(name: "AtriumBackup", dependencies: ["AtriumAPI", "AtriumRuntime", grpcCore], swiftSettings: settings),
        .target(name: "AtriumGateway", dependencies: ["AtriumTransport", "AtriumBackend", "AtriumPool", swiftProtobuf, "AtriumAPI", "AtriumCore", "AtriumRuntime", grpcCore, grpcHTTP2, logging, lifecycle, crypto], swiftSettings: settings),
        // Builds every service over a wiring (network or in-process), every `atrium serve` process from them, and
        // the local launcher (`LocalMesh`) that `atrium up` and the tests start a mesh of processes with.
        .target(
            name: "AtriumAssembly",
            dependencies: [
                "AtriumTransport", "AtriumPool", "AtriumAPI", "AtriumCore", "AtriumRuntime", "AtriumSecurity", "AtriumRegistry", "AtriumDelivery", "AtriumProcessing", "AtriumCatalog",
                "AtriumBackup", "AtriumGateway", grpcCore, logging, lifecycle,
            ],
            swiftSettings: settings
        ),
        // The SDK that hospital systems link: the API, core and transport only (no database, no service lifecycle;
        // `make lint` checks the resolved graph).
        .target(name: "AtriumClient", dependencies: [swiftProtobuf, "AtriumAPI", "AtriumCore", "AtriumTransport", grpcCore, grpcHTTP2, crypto, x509, asn1, nioFoundation] + nio, swiftSettings: settings),
        // The one executable: `atrium serve <service>`, `atrium up`, and the CLI verbs.
        .executableTarget(
            name: "atrium",
            dependencies: [
                "AtriumTransport", "AtriumAPI", "AtriumCore", "AtriumDICOM", "AtriumImaging", "AtriumRuntime", "AtriumSecurity",
                "AtriumDelivery", "AtriumGateway", "AtriumClient", "AtriumAssembly",
                .product(name: "ArgumentParser", package: "swift-argument-parser"), lifecycle, .product(name: "UnixSignals", package: "swift-service-lifecycle"), logging, swiftProtobuf, grpcCore, grpcHTTP2,
            ],
            swiftSettings: settings
        ),
        // Test support: launching the real mesh as processes, fixtures, PKI helpers.
        .target(
            name: "AtriumTesting",
            dependencies: ["AtriumAPI", "AtriumCore", "AtriumDICOM", "AtriumRuntime", "AtriumClient", "AtriumAssembly", "AtriumSecurity", grpcCore, swiftProtobuf, logging, lifecycle],
            swiftSettings: settings
        ),
        .testTarget(name: "AtriumStorageTests", dependencies: ["AtriumStorage", "AtriumTesting", "AtriumCore", grdb, crypto], swiftSettings: settings),
        .testTarget(
            name: "AtriumRuntimeTests",
            dependencies: [
                "AtriumTransport", "AtriumRuntime", "AtriumTesting", "AtriumAPI", "AtriumCore", grpcCore, swiftProtobuf, x509, asn1,
                .product(name: "GRPCInProcessTransport", package: "grpc-swift-2"),
            ],
            swiftSettings: settings
        ),
        .testTarget(
            name: "AtriumSecurityTests",
            dependencies: ["AtriumTransport", "AtriumSecurity", "AtriumRuntime", "AtriumTesting", "AtriumAPI", grpcCore, swiftProtobuf, grdb, x509, crypto, logging],
            swiftSettings: settings
        ),
        .testTarget(name: "AtriumDICOMTests", dependencies: ["AtriumDICOM", "AtriumTesting", crypto], exclude: ["make_corpus.py", "Regressions"], swiftSettings: settings),
        .testTarget(name: "AtriumImagingTests", dependencies: ["AtriumImaging"], exclude: ["make_oracle.py"], swiftSettings: settings),
        .testTarget(name: "AtriumGatewayTests", dependencies: ["AtriumGateway", "AtriumRuntime", "AtriumCore", grpcCore], swiftSettings: settings),
        // Every service in the test process over in-process links: behaviour and refusals in milliseconds.
        .testTarget(
            name: "AtriumAssemblyTests",
            dependencies: ["AtriumTesting", "AtriumDelivery", "AtriumAPI", "AtriumCore", "AtriumRuntime", grpcCore, swiftProtobuf, crypto],
            swiftSettings: settings
        ),
        .testTarget(name: "AtriumIntegrationTests", dependencies: ["AtriumTesting", "AtriumTransport", "AtriumAssembly", "AtriumClient", "AtriumGateway", "AtriumAPI", "AtriumCore", "AtriumRuntime", grpcCore, grpcHTTP2, swiftProtobuf, grdb, crypto], swiftSettings: settings),
    ]
)
