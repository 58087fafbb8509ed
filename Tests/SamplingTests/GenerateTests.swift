import Foundation
import XCTest
import TensorCore
import DataIO
import Models
import Training
import Figures
import Metrics
import Sampling

/// `forge generate images`: layout, manifest, per-item determinism, `--only`, `--resume`, `--per-class`.
final class GenerateTests: XCTestCase {
    private func folder() throws -> String {
        let path = NSTemporaryDirectory() + "forge-generate-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// A small untrained DCGAN (32×32 gray) written as a checkpoint; `classes` 0 = unconditional.
    private func ganCheckpoint(classes: Int, in dir: String) throws -> String {
        var c = DCGANConfig()
        (c.imageSize, c.channels, c.nz, c.ngf, c.ndf, c.embedDim, c.classCount, c.seed) = (32, 1, 8, 4, 4, 4, classes, 5)
        let gan = DCGAN(c)
        let path = dir + "/gan.safetensors"
        let names = ["T-shirt/top", "Trouser", "Bag"].prefix(classes)
        try Checkpoint.save(to: path, kind: "gan", configJSON: try Checkpoint.jsonString(c), state: TrainingState(),
                            modules: [("generator", gan.generator), ("discriminator", gan.discriminator)],
                            extraMetadata: classes > 0 ? ["forge.classes": try Checkpoint.jsonString(Array(names))] : [:])
        return path
    }

    /// Every file under `root` (relative path → bytes).
    private func contents(_ root: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        let e = FileManager.default.enumerator(atPath: root)!
        while let rel = e.nextObject() as? String {
            var dir: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + rel, isDirectory: &dir), !dir.boolValue {
                out[rel] = try FileIO.readBytes(root + "/" + rel)
            }
        }
        return out
    }

    private func generate(_ checkpoint: String, _ out: String, _ options: ImageGenerationOptions) throws -> GenerationReport {
        try ImageDatasetGenerator(source: GANSampler(checkpoint: checkpoint), checkpointPath: checkpoint,
                                  options: options, outputDirectory: out).run()
    }

    func testItemSeedsAreDistinctAndStable() {
        let seeds = (0..<10_000).map { ItemSeed.derive(runSeed: 3, index: $0) }
        XCTAssertEqual(Set(seeds).count, seeds.count)
        XCTAssertEqual(ItemSeed.derive(runSeed: 3, index: 1234), seeds[1234])
        XCTAssertNotEqual(ItemSeed.derive(runSeed: 4, index: 1234), seeds[1234])
        // SplitMix64 reference value (state 0 → first output of the reference C implementation)
        XCTAssertEqual(SplitMix64.output(0), 0xE220_A839_7B1D_CDAF)
        var state: UInt64 = 0
        XCTAssertEqual([SplitMix64.next(&state), SplitMix64.next(&state)], [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4])
    }

    func testConditionalLayoutManifestAndPerClassCounts() throws {
        let dir = try folder()
        let checkpoint = try ganCheckpoint(classes: 3, in: dir)
        let out = dir + "/synthetic"
        let report = try generate(checkpoint, out, ImageGenerationOptions(count: 0, perClass: 4, seed: 9, batchSize: 5))
        XCTAssertEqual(report.written, 12)

        // DIR/<class>/<index>.png, class names made folder-safe; ImageFolder reads it back with 4 per class
        let files = try contents(out).keys.sorted()
        XCTAssertEqual(files.filter { $0.hasPrefix("T-shirt_top/") }.count, 4)
        XCTAssertEqual(files.filter { $0.hasPrefix("Trouser/") }.count, 4)
        XCTAssertEqual(files.filter { $0.hasPrefix("Bag/") }.count, 4)
        XCTAssertTrue(files.contains("T-shirt_top/000000.png") && files.contains("Trouser/000001.png") && files.contains("Bag/000011.png"))
        XCTAssertTrue(files.contains("manifest.csv"))
        let set = try ImageFolder(path: out, size: 32, channels: 1).imageSet
        XCTAssertEqual(set.count, 12)
        XCTAssertEqual(set.classNames, ["Bag", "T-shirt_top", "Trouser"])
        XCTAssertEqual((0..<3).map { c in set.labels.filter { $0 == c }.count }, [4, 4, 4])

        let manifest = try DatasetManifest.read(path: out + "/manifest.csv")
        XCTAssertEqual(manifest.rows.count, 12)
        XCTAssertEqual(manifest.modelKind, "gan")
        XCTAssertEqual(manifest.checkpoint, "gan.safetensors")
        XCTAssertEqual(manifest.checkpointSHA256, SHA256.hexDigest(try FileIO.readBytes(checkpoint)))
        XCTAssertTrue(manifest.parameters.contains("per_class=4") && manifest.parameters.contains("seed=9"))
        let row = manifest.rows[4]
        XCTAssertEqual(row.file, "Trouser/000004.png")
        XCTAssertEqual(row.label, 1)
        XCTAssertEqual(row.className, "Trouser")   // the quoted-field round trip keeps names intact
        XCTAssertEqual(manifest.rows[0].className, "T-shirt/top")
        XCTAssertEqual(row.seed, ItemSeed.derive(runSeed: 9, index: 4))
    }

    func testUnconditionalLayoutAndPerClassRefusal() throws {
        let dir = try folder()
        let checkpoint = try ganCheckpoint(classes: 0, in: dir)
        _ = try generate(checkpoint, dir + "/u", ImageGenerationOptions(count: 7, seed: 1, batchSize: 3))
        XCTAssertEqual(try contents(dir + "/u").keys.sorted(), ["000000.png", "000001.png", "000002.png", "000003.png",
                                                                "000004.png", "000005.png", "000006.png", "manifest.csv"])
        XCTAssertThrowsError(try generate(checkpoint, dir + "/v", ImageGenerationOptions(count: 0, perClass: 2)))
    }

    func testItemsDoNotDependOnTheirBatchBeyondRounding() throws {
        let dir = try folder()
        let sampler = try GANSampler(checkpoint: try ganCheckpoint(classes: 3, in: dir))
        let seeds = (0..<6).map { ItemSeed.derive(runSeed: 2, index: $0) }
        let all = sampler.images(seeds: seeds, labels: [0, 1, 2, 0, 1, 2])
        let alone = sampler.images(seeds: [seeds[4]], labels: [1])
        let diff = zip(all[4].scalars, alone[0].scalars).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(diff, 1e-5, "item 4 must come from its own z, not from its batch")
        XCTAssertNotEqual(all[3].scalars, all[0].scalars, "items of one class differ")
    }

    func testOnlyRecreatesAnItemBitIdentically() throws {
        let dir = try folder()
        let checkpoint = try ganCheckpoint(classes: 3, in: dir)
        let out = dir + "/s"
        let options = ImageGenerationOptions(count: 10, seed: 4, batchSize: 4)
        _ = try generate(checkpoint, out, options)
        let before = try contents(out)
        let item = out + "/Trouser/000007.png"
        try FileManager.default.removeItem(atPath: item)
        var only = options
        only.only = 7
        let report = try generate(checkpoint, out, only)
        XCTAssertEqual(report.written, 1)
        XCTAssertEqual(try contents(out), before)
        // another run seed refuses to mix into this folder
        var other = only
        other.seed = 5
        XCTAssertThrowsError(try generate(checkpoint, out, other))
        var outside = options
        outside.only = 10
        XCTAssertThrowsError(try generate(checkpoint, out, outside))
    }

    func testResumeAfterAnInterruptionGivesTheUninterruptedFolder() throws {
        let dir = try folder()
        let checkpoint = try ganCheckpoint(classes: 3, in: dir)
        let options = ImageGenerationOptions(count: 23, seed: 6, batchSize: 5)
        _ = try generate(checkpoint, dir + "/full", options)
        let full = try contents(dir + "/full")
        XCTAssertEqual(full.count, 24)

        // A killed run: the manifest and the first batches are there, an item is truncated, a
        // temporary file of the atomic writer is left over, the rest is missing.
        let partial = dir + "/partial"
        _ = try generate(checkpoint, partial, options)
        let manager = FileManager.default
        for rel in full.keys where rel.hasSuffix(".png") {
            if let index = Int(rel.split(separator: "/").last!.dropLast(4)), index >= 12 { try manager.removeItem(atPath: partial + "/" + rel) }
        }
        let truncated = partial + "/Bag/000005.png"
        try FileIO.writeAtomically(Array(try FileIO.readBytes(truncated).prefix(40)), to: truncated)
        try FileIO.writeAtomically([1, 2, 3], to: partial + "/Trouser/.000013.png.tmp-99-1")
        XCTAssertNotEqual(try contents(partial), full)

        var resume = options
        resume.resume = true
        let report = try generate(checkpoint, partial, resume)
        XCTAssertEqual(report.kept, 11)
        XCTAssertEqual(report.written, 12)
        XCTAssertEqual(try contents(partial), full)

        // resuming a complete folder writes nothing
        XCTAssertEqual(try generate(checkpoint, partial, resume).written, 0)
    }

    /// The manifest records each item's sha256, and `--resume` rewrites an item whose file is a valid
    /// PNG of the right size but not the one this run wrote (it used to be kept), and says so.
    func testResumeRegeneratesAnItemSwappedInFromElsewhere() throws {
        let dir = try folder()
        let checkpoint = try ganCheckpoint(classes: 0, in: dir)
        let out = dir + "/s"
        let options = ImageGenerationOptions(count: 9, seed: 2, batchSize: 4)
        _ = try generate(checkpoint, out, options)
        let original = try contents(out)
        let manifest = try DatasetManifest.read(path: out + "/manifest.csv")
        XCTAssertTrue(manifest.recordsItemSHA256)
        XCTAssertEqual(manifest.rows.map(\.sha256), manifest.rows.map { SHA256.hexDigest(original[$0.file]!) })

        // Another item's file (a valid 32×32 gray PNG of this very model) in item 3's place.
        try FileIO.writeAtomically(original["000005.png"]!, to: out + "/000003.png")
        XCTAssertNotEqual(try contents(out), original)
        var resume = options
        resume.resume = true
        var warnings: [String] = []
        let report = try ImageDatasetGenerator(source: GANSampler(checkpoint: checkpoint), checkpointPath: checkpoint,
                                               options: resume, outputDirectory: out).run(warn: { warnings.append($0) })
        XCTAssertEqual(report.replaced, ["000003.png"])
        XCTAssertEqual(report.kept, 8)
        XCTAssertEqual(report.written, 1)
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings.first?.contains(out + "/000003.png") == true && warnings.first?.contains("sha256") == true, warnings.first ?? "")
        XCTAssertEqual(try contents(out), original)
        // A clean folder resumes without a warning.
        warnings = []
        XCTAssertEqual(try ImageDatasetGenerator(source: GANSampler(checkpoint: checkpoint), checkpointPath: checkpoint,
                                                 options: resume, outputDirectory: out).run(warn: { warnings.append($0) }).kept, 9)
        XCTAssertEqual(warnings, [])
    }

    /// A manifest written before item hashes (no sha256 column) still resumes: items that decode are
    /// kept as before, and the rewritten manifest records their hashes from then on.
    func testAManifestWithoutItemHashesStillResumesAndGainsThem() throws {
        let dir = try folder()
        let checkpoint = try ganCheckpoint(classes: 3, in: dir)
        let out = dir + "/s"
        let options = ImageGenerationOptions(count: 7, seed: 8, batchSize: 3)
        _ = try generate(checkpoint, out, options)
        let original = try contents(out)
        var old = try DatasetManifest.read(path: out + "/manifest.csv")
        old.recordsItemSHA256 = false
        let oldText = old.csv()
        XCTAssertEqual(oldText.split(separator: "\n").first.map(String.init), DatasetManifest.header.joined(separator: ","))
        try FileIO.writeAtomically(Array(oldText.utf8), to: out + "/manifest.csv")
        XCTAssertFalse(try DatasetManifest.read(path: out + "/manifest.csv").recordsItemSHA256)
        try FileManager.default.removeItem(atPath: out + "/Trouser/000004.png")
        try FileIO.writeAtomically(Array(original["Bag/000005.png"]!.prefix(50)), to: out + "/Bag/000005.png")

        var resume = options
        resume.resume = true
        let report = try generate(checkpoint, out, resume)
        XCTAssertEqual(report.kept, 5)
        XCTAssertEqual(report.written, 2)
        XCTAssertEqual(report.replaced, [], "without recorded hashes nothing is known to be swapped")
        XCTAssertEqual(try contents(out), original)   // the manifest too: it has every hash again
        XCTAssertTrue(try DatasetManifest.read(path: out + "/manifest.csv").recordsItemSHA256)
    }

    /// A run killed after writing some items leaves the manifest with the hashes of the items in
    /// place (recorded before they were renamed in) and temporaries for the rest; a file under an
    /// item's name without a recorded hash is not this run's and is regenerated.
    func testAnItemWithoutARecordedHashIsRegenerated() throws {
        let dir = try folder()
        let checkpoint = try ganCheckpoint(classes: 0, in: dir)
        let out = dir + "/s"
        let options = ImageGenerationOptions(count: 4, seed: 1, batchSize: 2)
        _ = try generate(checkpoint, out, options)
        let original = try contents(out)
        var manifest = try DatasetManifest.read(path: out + "/manifest.csv")
        manifest.rows[2].sha256 = nil
        try FileIO.writeAtomically(Array(manifest.csv().utf8), to: out + "/manifest.csv")
        try FileIO.writeAtomically(original["000001.png"]!, to: out + "/000002.png")
        var resume = options
        resume.resume = true
        let report = try generate(checkpoint, out, resume)
        XCTAssertEqual([report.kept, report.written], [3, 1])
        XCTAssertEqual(try contents(out), original)
    }

    func testRefusesANonEmptyFolderWithoutManifest() throws {
        let dir = try folder()
        let checkpoint = try ganCheckpoint(classes: 0, in: dir)
        try FileManager.default.createDirectory(atPath: dir + "/x", withIntermediateDirectories: true)
        try FileIO.writeAtomically([1], to: dir + "/x/other.txt")
        XCTAssertThrowsError(try generate(checkpoint, dir + "/x", ImageGenerationOptions(count: 2)))
    }
}

/// The in-tree SHA-256 against FIPS 180-4 vectors and the system's `sha256sum`.
final class GenerateSHA256Tests: XCTestCase {
    func testKnownVectors() {
        XCTAssertEqual(SHA256.hexDigest([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hexDigest(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hexDigest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") // 56 bytes: padding spills into a second block
        XCTAssertEqual(SHA256.hexDigest([UInt8](repeating: 0x61, count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testStreamingEqualsOneShotAndSha256sum() throws {
        var g = RandomGenerator(seed: 1)
        let bytes = (0..<(3 << 20) + 77).map { _ in UInt8(truncatingIfNeeded: g.next()) }
        var hasher = SHA256()
        for piece in stride(from: 0, to: bytes.count, by: 1000) { hasher.update(bytes[piece..<min(bytes.count, piece + 1000)]) }
        let streamed = SHA256.hex(hasher.finalize())
        XCTAssertEqual(streamed, SHA256.hexDigest(bytes))

        let path = NSTemporaryDirectory() + "forge-sha-\(UUID().uuidString)"
        try FileIO.writeAtomically(bytes, to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(try SHA256.hexDigest(ofFile: path), streamed)
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        tool.arguments = [path]
        let pipe = Pipe()
        tool.standardOutput = pipe
        try tool.run()
        tool.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(String(output.prefix(64)), streamed)
    }
}

/// The Fréchet distance and its Jacobi eigensolver against closed forms.
final class GenerateFrechetTests: XCTestCase {
    func testJacobiReconstructsASymmetricMatrix() {
        let d = 12
        var g = RandomGenerator(seed: 3)
        var a = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for j in i..<d { let v = g.nextDouble() * 2 - 1; a[i * d + j] = v; a[j * d + i] = v } }
        let (values, vectors) = symmetricEigen(a, dimension: d)
        for i in 0..<d {
            for j in 0..<d {
                let r = (0..<d).reduce(0.0) { $0 + vectors[i * d + $1] * values[$1] * vectors[j * d + $1] }
                XCTAssertEqual(r, a[i * d + j], accuracy: 1e-10)
            }
        }
    }

    func testDistanceMatchesTheClosedFormForDiagonalGaussians() {
        // Large samples of independent N(μ, σ²) coordinates: FD → |Δμ|² + Σ(σ1 − σ2)².
        var g = RandomGenerator(seed: 4)
        let d = 4, n = 4000
        let (mu1, s1): ([Double], [Double]) = ([0, 1, 2, 3], [1, 2, 0.5, 1])
        let (mu2, s2): ([Double], [Double]) = ([1, 1, 2, 2], [1, 1, 0.5, 3])
        let x = (0..<n).map { _ in (0..<d).map { mu1[$0] + s1[$0] * Double(g.nextNormal()) } }
        let y = (0..<n).map { _ in (0..<d).map { mu2[$0] + s2[$0] * Double(g.nextNormal()) } }
        let expected = zip(mu1, mu2).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } + zip(s1, s2).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        XCTAssertEqual(frechetDistance(FeatureStatistics(rows: x), FeatureStatistics(rows: y)), expected, accuracy: 0.15 * expected)
        let stats = FeatureStatistics(rows: x)
        XCTAssertEqual(frechetDistance(stats, stats), 0, accuracy: 1e-8)
    }

    func testDistanceOfCorrelatedGaussiansMatchesTheTwoByTwoFormula() {
        // Σ1 = I, Σ2 = [[2, 1], [1, 2]] (eigenvalues 3 and 1): Tr(Σ2^½) = √3 + 1, FD = 2 + 4 − 2(√3 + 1).
        var g = RandomGenerator(seed: 5)
        let n = 20_000
        let x = (0..<n).map { _ in [Double(g.nextNormal()), Double(g.nextNormal())] }
        // y = L·e with L Lᵀ = Σ2: L = [[√2, 0], [1/√2, √(3/2)]]
        let y = (0..<n).map { _ -> [Double] in
            let e0 = Double(g.nextNormal()), e1 = Double(g.nextNormal())
            return [Double(2).squareRoot() * e0, e0 / Double(2).squareRoot() + Double(1.5).squareRoot() * e1]
        }
        XCTAssertEqual(frechetDistance(FeatureStatistics(rows: x), FeatureStatistics(rows: y)), 6 - 2 * (Double(3).squareRoot() + 1), accuracy: 0.05)
    }
}

/// `forge eval synthetic` on tiny data: class alignment by folder name and the whole pipeline.
final class GenerateEvaluationTests: XCTestCase {
    /// Gray 16×16 images whose class is the row band holding a bright stripe, plus noise.
    private func stripes(_ count: Int, classes: [Int], seed: UInt64) -> (Tensor, [Int]) {
        var g = RandomGenerator(seed: seed)
        let labels = (0..<count).map { classes[$0 % classes.count] }
        let images = Tensor(shape: [count, 1, 16, 16]) { out in
            for (n, label) in labels.enumerated() {
                for y in 0..<16 { for x in 0..<16 { out[n * 256 + y * 16 + x] = (y / 5 == label ? 0.9 : -0.9) + 0.2 * g.nextNormal() } }
            }
        }
        return (images, labels)
    }

    func testAlignmentMatchesFolderNamesToRealClasses() throws {
        let real = ["T-shirt/top", "Trouser", "Bag"]
        // ImageFolder sorts folder names: Bag=0, T-shirt_top=1, Trouser=2
        let synthetic = ImageSet(images: Tensor.zeros([3, 1, 8, 8]), labels: [0, 1, 2], classNames: ["Bag", "T-shirt_top", "Trouser"])
        let aligned = try SyntheticEvaluation.align(synthetic, toClassNames: real)
        XCTAssertEqual(aligned.labels, [2, 0, 1])
        XCTAssertEqual(aligned.classNames, real)
        let stranger = ImageSet(images: Tensor.zeros([1, 1, 8, 8]), labels: [0], classNames: ["Sock"])
        XCTAssertThrowsError(try SyntheticEvaluation.align(stranger, toClassNames: real))
    }

    func testSyntheticSetMissingAClassScoresLowerThanReal() throws {
        let names = ["top", "middle", "bottom"]
        let (realImages, realLabels) = stripes(96, classes: [0, 1, 2], seed: 1)
        let (testImages, testLabels) = stripes(60, classes: [0, 1, 2], seed: 2)
        // a "generator" that never produces class 2 and mislabels it
        let (synImages, synLabels) = stripes(96, classes: [0, 1, 1], seed: 3)
        let dir = NSTemporaryDirectory() + "forge-cas-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = ClassifierConfig()
        (config.width, config.featureDim, config.batchSize, config.learningRate) = (4, 16, 16, 3e-3)
        let result = try SyntheticEvaluation.run(
            real: ImageSet(images: realImages, labels: realLabels, classNames: names),
            synthetic: ImageSet(images: synImages, labels: synLabels.map { $0 == 1 ? 0 : 1 }, classNames: ["middle", "top"]),
            test: ImageSet(images: testImages, labels: testLabels, classNames: names),
            options: SyntheticEvaluationOptions(epochs: 4, classifier: config, workDirectory: dir, showProgress: false))
        XCTAssertEqual(result.realTrainCount, 96)
        XCTAssertGreaterThan(result.realAccuracy.overall, 0.9)
        XCTAssertLessThan(result.syntheticAccuracy.overall, 0.7)
        XCTAssertLessThan(result.syntheticAccuracy.perClass[2], 0.05, "no synthetic class-2 images: class 2 is never predicted")
        XCTAssertGreaterThan(result.featureDistance, result.realToRealDistance)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/classifier-real/checkpoint.safetensors"))
        // The per-class measures: no synthetic "bottom" images, so that class's figures are NaN; the
        // table has the overall row and one per class, in the real class order.
        XCTAssertEqual(result.perClassQuality.map(\.scope), names)
        XCTAssertEqual(result.perClassQuality.map(\.syntheticCount), [32, 64, 0])
        XCTAssertTrue(result.perClassQuality[2].precisionRecall.recall.isNaN)
        XCTAssertEqual(result.overallQuality.syntheticCount, 96)
        let csv = result.csv.split(separator: "\n")
        XCTAssertEqual(csv.count, 5)
        XCTAssertEqual(String(csv[0]), SyntheticEvaluationResult.csvHeader.joined(separator: ","))
        XCTAssertTrue(csv[3].hasPrefix("middle,"), String(csv[3]))
        XCTAssertTrue(csv[4].hasPrefix("bottom,") && csv[4].contains("nan"), String(csv[4]))
    }

    /// Per-class quality on hand-made features (row means): a synthetic set equal to the real one scores
    /// precision = recall = 1, Fréchet distance 0 and diversity 1; one image repeated per class scores
    /// precision 1, recall 1/n and diversity 0 (the collapse the per-class recall exists to show).
    func testQualityOfACopyAndOfACollapsedSet() throws {
        let names = ["top", "middle", "bottom"]
        let (images, labels) = stripes(60, classes: [0, 1, 2], seed: 4)
        let real = ImageSet(images: images, labels: labels, classNames: names)
        // Row means of the 16×16 images as 16-d features (the stripe's row and the noise show there).
        let pixels: (Tensor) -> [[Double]] = { t in
            (0..<t.shape[0]).map { n in (0..<16).map { y in (0..<16).reduce(0.0) { $0 + Double(t.buffer[n * 256 + y * 16 + $1]) } / 16 } }
        }
        let (all, perClass) = try SyntheticEvaluation.quality(of: real, against: real, features: pixels, k: 3, overallCap: 1000)
        for q in perClass + [all] {
            XCTAssertEqual(q.precisionRecall.precision, 1, q.scope)
            XCTAssertEqual(q.precisionRecall.recall, 1, q.scope)
            XCTAssertEqual(q.frechetDistance, 0, accuracy: 1e-3, q.scope)  // square roots of ~0 eigenvalues: round-off only
            XCTAssertEqual(q.diversityRatio, 1, accuracy: 1e-12, q.scope)
        }
        // Collapsed: every image of class c is the first real image of class c.
        let firstOfClass = (0..<3).map { c in labels.firstIndex(of: c)! }
        let collapsed = ImageSet(images: images.indexSelect(labels.map { firstOfClass[$0] }), labels: labels, classNames: names)
        let (_, collapsedPerClass) = try SyntheticEvaluation.quality(of: collapsed, against: real, features: pixels, k: 3, overallCap: 1000)
        for q in collapsedPerClass {
            XCTAssertEqual(q.precisionRecall.precision, 1, q.scope)
            XCTAssertEqual(q.precisionRecall.recall, 1.0 / 20, accuracy: 1e-12, q.scope)
            XCTAssertEqual(q.syntheticSpread, 0, q.scope)
            XCTAssertGreaterThan(q.realSpread, 0.1, q.scope)
        }
    }
}
