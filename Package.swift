// swift-tools-version:6.0
// SwiftNBD: a TLS-first NBD server, client library and toolkit.
// Dependency direction (modules only depend downward; see docs/architecture.md §1):
//   swiftnbd → NBDServer / NBDClient / Migration → NBDProtocol, NBDTLS, BlockDevices ◄ Qcow2
import PackageDescription

let package = Package(
    name: "SwiftNBD",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "swiftnbd", targets: ["swiftnbd"]),
        .library(name: "NBDClient", targets: ["NBDClient"]),
        .library(name: "NBDServer", targets: ["NBDServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        // Live metrics (issue 11): the API for the libraries, Prometheus exposition for the CLI.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // Sans-I/O protocol core: wire types, codecs, negotiation state machines, validator.
        .target(name: "NBDProtocol"),
        // Storage that knows nothing of NBD.
        .target(name: "BlockDevices", dependencies: [.product(name: "SystemPackage", package: "swift-system")]),
        .systemLibrary(name: "CGnuTLS", pkgConfig: "gnutls", providers: [.apt(["libgnutls28-dev"])]),
        .target(name: "NBDTLS", dependencies: ["CGnuTLS"]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(name: "Qcow2", dependencies: ["BlockDevices", "CZlib", "CZstd"]),
        // I/O engines: the only users of sockets and threads.
        .target(name: "NBDServer", dependencies: [
            "NBDProtocol", "NBDTLS", "BlockDevices",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        // The metrics backend of `serve --metrics`: swift-prometheus plus lock-free latency histograms.
        .target(name: "PrometheusExposition", dependencies: [
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .target(name: "NBDClient", dependencies: ["NBDProtocol", "NBDTLS", "BlockDevices"]),
        .target(name: "QMP"),
        .target(name: "Migration", dependencies: [
            "QMP", "NBDServer", "NBDTLS", "BlockDevices", "Qcow2",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "swiftnbd", dependencies: [
            "NBDProtocol", "NBDServer", "NBDClient", "NBDTLS", "BlockDevices", "Qcow2", "Migration", "QMP",
            "PrometheusExposition",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),

        // Test-only: libnbd as an in-process reference client.
        .systemLibrary(name: "CLibNBD", path: "Tests/CLibNBD", pkgConfig: "libnbd", providers: [.apt(["libnbd-dev"])]),
        // Shared by the test targets: the fuzz corpora (FuzzRegressionTests) and a seeded RNG.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "NBDProtocolTests", dependencies: ["NBDProtocol", "TestSupport"]),
        .testTarget(name: "BlockDevicesTests", dependencies: ["BlockDevices"]),
        .testTarget(name: "NBDTLSTests", dependencies: ["NBDTLS", "TestSupport"]),
        .testTarget(name: "Qcow2Tests", dependencies: ["Qcow2", "BlockDevices", "TestSupport"]),
        .testTarget(name: "NBDServerTests", dependencies: ["NBDServer", "NBDProtocol", "BlockDevices", "NBDTLS", "TestSupport",
                                                          "PrometheusExposition",
                                                          .product(name: "CoreMetrics", package: "swift-metrics"),
                                                          .product(name: "Prometheus", package: "swift-prometheus")]),
        .testTarget(name: "NBDClientTests", dependencies: ["NBDClient", "NBDServer", "NBDProtocol", "BlockDevices", "NBDTLS",
                                                          "TestSupport"]),
        .testTarget(name: "MigrationTests", dependencies: ["Migration", "QMP", "TestSupport"]),
        .testTarget(name: "InteropTests", dependencies: [
            "CLibNBD", "NBDClient", "NBDProtocol", "BlockDevices", "Qcow2", "QMP", "TestSupport",
        ]),
    ],
    swiftLanguageModes: [.v5]
)

// MARK: - Fuzz targets (issue 14) ------------------------------------------------------------
// libFuzzer executables, one per input surface (Fuzz/<name>/). They exist only when
// SWIFTNBD_FUZZ=1 (set by scripts/fuzz.sh, which builds them with -sanitize=fuzzer,address into
// .build-fuzz): without the sanitizer they have no `main`, and normal builds never see them.
if Context.environment["SWIFTNBD_FUZZ"] == "1" {
    let fuzzTargets: [(name: String, module: String, dependencies: [Target.Dependency])] = [
        ("server-negotiation", "FuzzServerNegotiation", ["NBDProtocol"]),
        ("transmission", "FuzzTransmission", ["NBDServer", "NBDProtocol", "BlockDevices"]),
        ("client-negotiation", "FuzzClientNegotiation", ["NBDProtocol"]),
        ("client-replies", "FuzzClientReplies", ["NBDClient", "NBDProtocol"]),
        ("qcow2", "FuzzQcow2", ["Qcow2", "BlockDevices"]),
        ("uri", "FuzzURI", ["NBDClient"]),
        ("psk-file", "FuzzPSKFile", ["NBDTLS"]),
        ("distinguished-name", "FuzzDistinguishedName", ["NBDTLS"]),
        ("qmp", "FuzzQMP", ["QMP"]),
    ]
    package.targets.append(.target(name: "LibFuzzerDriver", path: "Fuzz/driver"))
    for target in fuzzTargets {
        package.targets.append(.executableTarget(name: target.module, dependencies: target.dependencies + ["LibFuzzerDriver"],
                                                 path: "Fuzz/\(target.name)",
                                                 swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
        package.products.append(.executable(name: "fuzz-\(target.name)", targets: [target.module]))
    }
}
// MARK: - end of fuzz targets ------------------------------------------------------------------
