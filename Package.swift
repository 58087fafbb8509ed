// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Forge",
    products: [
        .library(name: "TensorCore", targets: ["TensorCore"]),
        .library(name: "DataIO", targets: ["DataIO"]),
        .library(name: "Models", targets: ["Models"]),
        .library(name: "Figures", targets: ["Figures"]),
        .library(name: "Metrics", targets: ["Metrics"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Sampling", targets: ["Sampling"]),
        .executable(name: "forge", targets: ["forge"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `swift package generate-documentation` (DocC); only the plugin, nothing links it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // System libraries and C shims
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CSndFile", path: "Sources/CSndFile", pkgConfig: "sndfile",
                       providers: [.apt(["libsndfile1-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CPNG", path: "Sources/CPNG",
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("z")]),
        .target(name: "CJPEG", path: "Sources/CJPEG", linkerSettings: [.linkedLibrary("jpeg")]),
        .target(name: "CKernels", path: "Sources/CKernels", linkerSettings: [.linkedLibrary("m")]),
        // Open MPI, dlopen'ed at run time by data-parallel training: nothing links libmpi, so a build
        // without MPI installed works and runs single-process.
        .target(name: "CMPI", path: "Sources/CMPI", linkerSettings: [.linkedLibrary("dl")]),

        // Swift modules, each importing only downward
        .target(name: "TensorCore", dependencies: ["CBLAS", "CKernels"]),
        .target(name: "DataIO", dependencies: ["TensorCore", "CPNG", "CJPEG", "CSndFile", "CZlib"]),
        // Networks and their checkpoint formats (kind + config + weights), read and written.
        .target(name: "Models", dependencies: ["TensorCore", "DataIO"]),
        // Pictures (line plots, waveforms and spectrograms) and measures (Fréchet distance) that
        // training and sampling both use.
        .target(name: "Figures", dependencies: ["TensorCore", "DataIO"]),
        .target(name: "Metrics", dependencies: []),
        // The one training loop and the tasks; Sampling generates from checkpoints and needs no Training.
        .target(name: "Training", dependencies: ["TensorCore", "DataIO", "Models", "Figures", "Metrics", "CMPI"]),
        .target(name: "Sampling", dependencies: ["TensorCore", "DataIO", "Models", "Figures"]),
        .executableTarget(name: "forge", dependencies: [
            "TensorCore", "DataIO", "Models", "Figures", "Metrics", "Training", "Sampling",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "CKernels"], resources: [.copy("Fixtures")]),
        .testTarget(name: "DataIOTests", dependencies: ["DataIO"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "DataIO", "Training"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "DataIO", "TensorCore", "Figures"], resources: [.copy("Fixtures")]),
        .testTarget(name: "SamplingTests", dependencies: ["Sampling", "Training", "Models", "DataIO", "TensorCore", "Figures", "Metrics"], resources: [.copy("Fixtures")]),
        // Pictures checked by their pixels (grids, audio figures, loss plots) and the terminal progress line.
        .testTarget(name: "FiguresTests", dependencies: ["Figures", "DataIO", "TensorCore", "Training"]),
        // Runs the forge binary itself (exit codes, messages, a tiny run); depends on it so it is built.
        .testTarget(name: "CLITests", dependencies: ["forge", "DataIO", "TensorCore"]),
        // The DocC tutorial's code (TensorCore.docc/TrainingASmallModel.md), compiled and run.
        .testTarget(name: "TutorialTests", dependencies: ["TensorCore", "DataIO"]),
    ]
)
