import ArgumentParser
import Foundation
import TensorCore
import DataIO
import Models
import Training
import Figures
import Metrics
import Sampling

// The char-transformer subcommands: `forge train char`, `forge sample char`, `forge eval char`,
// `forge bench char`. They parse arguments and call Training / Sampling; nothing else.

/// Where the shipped model lives: `checkpoints/shakespeare-char.safetensors` under the current folder,
/// or under the package folder the executable was built in (`.build/release/forge` → `../../`).
func shippedCharCheckpoint() -> String? { shippedCheckpoint("checkpoints/shakespeare-char.safetensors") }

/// A shipped file `name` (relative to the package) under the current folder or the package folder.
func shippedCheckpoint(_ name: String) -> String? {
    var candidates = [FileManager.default.currentDirectoryPath + "/" + name]
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for _ in 0..<4 {
        candidates.append(dir.path + "/" + name)
        dir = dir.deletingLastPathComponent()
    }
    return candidates.first { FileManager.default.fileExists(atPath: $0) }
}

private func stderr(_ s: String) { FileHandle.standardError.write(s.data(using: .utf8)!) }

/// The char checkpoint a sampling command reads: `--checkpoint` (a file or run folder) or the shipped
/// model, with `--heads` and `--vocab-from` for nanoGPT exports that lack them.
func openCharCheckpoint(_ checkpoint: String?, heads: Int?, vocabFrom: String?) throws -> CharCheckpoint {
    guard let path = checkpoint ?? shippedCharCheckpoint() else {
        throw ValidationError("no --checkpoint given and the shipped checkpoints/shakespeare-char.safetensors was not found")
    }
    var ck = try CharCheckpoint.load(path: path, heads: heads)
    if let vocabFrom { ck = try ck.replacingVocabulary(TextCorpus(path: vocabFrom).vocabulary) }
    guard !ck.vocabulary.isEmpty else {
        throw ValidationError("\(path) holds no vocabulary (metadata \"vocab\"); pass --vocab-from TEXT")
    }
    return ck
}

/// The char model's shape flags, shared by `train char` and `lr-find char`; a flag not given keeps
/// the preset's (or the resumed run's) value.
struct CharArchitectureFlags: ParsableArguments {
    @Option(parsing: .unconditional, help: "Transformer blocks.") var layers: Int?
    @Option(parsing: .unconditional, help: "Attention heads.") var heads: Int?
    @Option(parsing: .unconditional, help: "Embedding width.") var embd: Int?
    @Option(parsing: .unconditional, help: "Context length.") var block: Int?
    @Option(parsing: .unconditional, help: "Sequences per batch.") var batch: Int?
    @Option(parsing: .unconditional, help: "Dropout probability.") var dropout: Float?
    @Flag(help: "Biases in Linear and LayerNorm layers.") var bias = false

    func apply(to o: inout CharTrainingOptions) {
        if let v = layers { o.layers = v }
        if let v = heads { o.heads = v }
        if let v = embd { o.embedding = v }
        if let v = block { o.blockSize = v }
        if let v = batch { o.batchSize = v }
        if let v = dropout { o.dropout = v }
        if bias { o.bias = true }
    }
}

// MARK: - train

struct TrainChar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "char",
        abstract: "Train a character-level transformer (nanoGPT's recipe) on a text file or folder.",
        discussion: """
            Data parallel: `mpirun -np N forge train char …` with the same flags trains as N ranks (Open MPI, loaded \
            at run time; as root add --allow-run-as-root). --batch stays the global batch: each rank computes \
            --batch ÷ N rows of it (a batch that does not divide is an error) and the gradients are averaged with \
            MPI_Allreduce in buckets (a first of 1 MB, then 25 MB) while backward runs: a bucket is reduced as soon as \
            backward has produced all its gradients (FORGE_OVERLAP=0: after backward). So with --dropout 0 the run \
            follows a single process's within float rounding. Rank 0 alone writes the run folder and prints. \
            Threads per rank default to cores ÷ ranks on the node (FORGE_THREADS overrides).
            """)

    @Option(help: "A UTF-8 text file, or a folder of them.", completion: .file()) var data: String
    @Option(help: "baby (4/4/128, block 64, batch 12, 2000 iters; the default) or shakespeare (6/6/384, block 256, batch 64, 5000 iters, dropout 0.2). With --resume and no preset: the saved run's settings.")
    var preset: String?
    @OptionGroup var architecture: CharArchitectureFlags
    @Option(parsing: .unconditional, help: "Peak learning rate.") var lr: Float?
    @Option(parsing: .unconditional, help: "Final learning rate of the cosine decay.") var minLr: Float?
    @Option(parsing: .unconditional, help: "Linear warm-up iterations.") var warmup: Int?
    @Option(parsing: .unconditional, help: "Iterations of the cosine decay (default: --iters).") var decayIters: Int?
    @Option(parsing: .unconditional, help: "Hold the peak rate until this iteration, then decay (warm-up, stable, decay; 0 = decay right after warm-up). A resumed run may move it.")
    var decayStart: Int?
    @Option(parsing: .unconditional, help: "Evaluate train and val loss every N iterations (and at the end; 0 = only at the end).") var evalEvery: Int?
    @Option(parsing: .unconditional, help: "Batches per loss estimate.") var evalIters: Int?
    @Option(parsing: .unconditional, help: "AdamW weight decay (2-D weights only).") var weightDecay: Float?
    @Option(parsing: .unconditional, help: "Clip the gradient norm to this (0 = off).") var gradClip: Float?
    @OptionGroup var training: RunFlags

    func run() throws {
        let runDirectory = training.runDirectory(kind: "char", data: data)
        let checkpointPath = RunDirectory.checkpointPath(in: runDirectory)
        guard var o = CharTrainingOptions.preset(preset ?? "baby") else {
            throw ValidationError("unknown preset \(preset ?? ""); choose one of \(CharTrainingOptions.presetNames.joined(separator: ", "))")
        }
        var saved: CharTrainingOptions? = nil
        if training.resume, FileManager.default.fileExists(atPath: checkpointPath) {
            saved = CharTrainingOptions(metadata: try Checkpoint.load(checkpointPath, expectedKind: "char").metadata)
            if preset == nil, let saved { o = saved }
        }
        // --init: the architecture and vocabulary are the checkpoint's (FineTuningFlags.swift)
        let fineTuning = try training.initCheckpoint.map { try startCharFineTuning(from: $0, into: &o) }
        architecture.apply(to: &o)
        if let v = lr { o.learningRate = v }
        if let v = minLr { o.minLearningRate = v }
        if let v = warmup { o.warmupIterations = v }
        if let v = training.steps { o.iterations = v }
        if let v = decayIters { o.decayIterations = v }
        if let v = decayStart { o.decayStart = v }
        if let v = evalEvery { o.evalEvery = v }
        if let v = evalIters { o.evalIterations = v }
        if let v = weightDecay { o.weightDecay = v }
        if let v = gradClip { o.gradClip = v }
        if let v = training.seed { o.seed = v } else if saved == nil { o.seed = defaultSeed }
        if let v = training.logEvery { o.logEvery = v }
        if let saved { try refuseContradictions(saved: saved, now: o) }
        if let problem = o.problem() { throw problem }

        let corpus = try fineTuning?.corpus ?? textInSavedVocabulary(checkpointPath: checkpointPath)
        let needed = o.trainingMemoryEstimate(vocabSize: corpus.vocabularySize)
        let available = Double(ProcessInfo.processInfo.physicalMemory)
        if needed > 0.8 * available {
            throw ValidationError(String(format: "this configuration needs about %.1f GiB for one training step (block %d, batch %d, %d layers, %d wide) "
                + "but the machine has %.1f GiB; lower --block or --batch", needed / 1_073_741_824, o.blockSize, o.batchSize, o.layers,
                o.embedding, available / 1_073_741_824))
        }
        let task = try CharTrainingTask(corpus: corpus, options: o)
        let c = task.model.config
        let world = try DataParallelGroup.fromEnvironment()  // under mpirun: this rank of the job
        let quiet = world?.isRoot == false  // ranks other than 0 print nothing
        if !quiet { say("data: \(data): \(corpus.tokens.count) chars, vocab \(corpus.vocabularySize), train \(corpus.trainTokens.count) / val \(corpus.validationTokens.count)")
        say("model: \(c.layers) layers, \(c.heads) heads, \(c.embedding) embd, block \(c.blockSize), dropout \(c.dropout), bias \(c.bias): "
              + String(format: "%.2fM parameters", Double(task.model.nonEmbeddingParameterCount) / 1e6))
        say("training: batch \(o.batchSize), lr \(o.learningRate) → \(o.minLearningRate), warm-up \(o.warmupIterations), \(o.iterations) iters, "
              + "eval every \(o.evalEvery), threads \(Threads.count)") }
        var options = task.trainingOptions(runDirectory: runDirectory, minutes: training.minutes, resume: training.resume)
        if let fineTuning { options.extraMetadata = try initialize(task, from: fineTuning) }
        options.saveEvery = training.saveEvery
        options.tensorBoardDirectory = training.tensorBoardDirectory(runDirectory: runDirectory)
        if let e = training.epochs { options.epochs = e }
        options.dataParallel = world
        try runTraining(task, options) { summary in
            guard let best = summary.state.bestValue else {
                // --eval-every 0 evaluates only at the last step, which a stop (--minutes, a signal) comes before:
                // no val loss was measured and no best.safetensors written, so claim neither.
                say(outcomeWords(summary) + String(format: ", %.0f tok/s; no val loss measured (no evaluation ran), "
                    + "so no best.safetensors; `forge eval char --checkpoint %@` measures it", summary.itemsPerSecond, checkpointPath))
                return
            }
            say(outcomeWords(summary) + String(format: ", %.0f tok/s; best val loss %.4f (%.4f bits/char) at step %d → %@",
                                               summary.itemsPerSecond, best, best / log(2), summary.state.bestStep ?? 0,
                                               runDirectory + "/best.safetensors"))
        }
    }

    /// A resumed run keeps its recipe: a flag that changes it (other than the run's length) is an
    /// error naming both values, rather than silently winning or losing.
    private func refuseContradictions(saved: CharTrainingOptions, now: CharTrainingOptions) throws {
        var lengthless = now
        (lengthless.iterations, lengthless.decayIterations, lengthless.decayStart, lengthless.logEvery, lengthless.evalEvery) =
            (saved.iterations, saved.decayIterations, saved.decayStart, saved.logEvery, saved.evalEvery)
        guard lengthless != saved else { return }
        let pairs: [(String, String, String)] = [
            ("--layers", "\(saved.layers)", "\(now.layers)"), ("--heads", "\(saved.heads)", "\(now.heads)"),
            ("--embd", "\(saved.embedding)", "\(now.embedding)"), ("--block", "\(saved.blockSize)", "\(now.blockSize)"),
            ("--batch", "\(saved.batchSize)", "\(now.batchSize)"), ("--dropout", "\(saved.dropout)", "\(now.dropout)"),
            ("--bias", "\(saved.bias)", "\(now.bias)"), ("--lr", "\(saved.learningRate)", "\(now.learningRate)"),
            ("--min-lr", "\(saved.minLearningRate)", "\(now.minLearningRate)"), ("--warmup", "\(saved.warmupIterations)", "\(now.warmupIterations)"),
            ("--eval-iters", "\(saved.evalIterations)", "\(now.evalIterations)"), ("--weight-decay", "\(saved.weightDecay)", "\(now.weightDecay)"),
            ("--grad-clip", "\(saved.gradClip)", "\(now.gradClip)"), ("--beta1", "\(saved.beta1)", "\(now.beta1)"),
            ("--beta2", "\(saved.beta2)", "\(now.beta2)"), ("--seed", "\(saved.seed)", "\(now.seed)"),
        ]
        let differing = pairs.filter { $0.1 != $0.2 }.map { "\($0.0) \($0.2) (the checkpoint has \($0.1))" }
        throw ValidationError("--resume continues the saved run, but " + differing.joined(separator: ", ")
                              + " would change it; drop the flag, or start a new run in another --out")
    }
}

// MARK: - sample

struct SampleChar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "char",
        abstract: "Generate text from a character-level transformer (streams to stdout).",
        discussion: "Exact by default: every character is conditioned on the last min(length, block) characters, as nanoGPT's generate does. Sample i draws from its own generator seeded from (--seed, i), so its text does not depend on --batch.")

    @Option(help: "A char checkpoint (default: the shipped checkpoints/shakespeare-char.safetensors).", completion: .file(extensions: ["safetensors"])) var checkpoint: String?
    @Option(help: "Text to start from (\\n and \\t are understood, as in `forge generate text`).") var prompt: String = "\n"
    @Option(parsing: .unconditional, help: "Characters to generate per sample, ≥ 1 (fewer when a --stop string ends it).") var length: Int = 500
    @OptionGroup var sampling: TextSamplingFlags
    @Option(help: "Random seed; sample i uses a seed derived from (seed, i) (default 1337, as every command).") var seed: UInt64?
    @Option(parsing: .unconditional, help: "Number of samples.") var count: Int = 1
    @Option(parsing: .unconditional, help: "Samples decoded side by side (faster; with more than 1, a sample is printed when its batch ends instead of character by character).") var batch: Int = 1
    @Option(help: "Write the samples to this file instead of stdout.", completion: .file()) var out: String?
    @Option(help: "Write sample_N.txt files into this folder.", completion: .directory) var outDir: String?
    @Flag(help: "Drop prompt characters the model does not know instead of failing.") var skipUnknown = false
    @Option(parsing: .unconditional, help: "Heads, for a nanoGPT export whose metadata lacks n_head.") var heads: Int?
    @Option(help: "For a nanoGPT export without a vocabulary: the text it was trained on (its sorted characters).", completion: .file())
    var vocabFrom: String?

    func validate() throws {
        guard length >= 1 else { throw ValidationError("--length must be ≥ 1, got \(length)") }
        guard count >= 1 else { throw ValidationError("--count must be ≥ 1, got \(count)") }
        guard batch >= 1 else { throw ValidationError("--batch must be ≥ 1, got \(batch)") }
        if out != nil && outDir != nil { throw ValidationError("use --out or --out-dir, not both") }
    }

    func run() throws {
        let ck = try openCharCheckpoint(checkpoint, heads: heads, vocabFrom: vocabFrom)
        let prompt = unescapeControlCharacters(self.prompt)
        let promptTokens = try ck.encode(prompt, skipUnknown: skipUnknown)
        guard !promptTokens.isEmpty else { throw ValidationError("the prompt is empty (after dropping unknown characters)") }
        let options = sampling.options
        let runSeed = seed ?? defaultSeed
        let sampler = CharSampler(model: ck.model, vocabulary: ck.vocabulary)
        let toStdout = out == nil && outDir == nil
        let streaming = toStdout && batch == 1
        let terminal = isatty(STDOUT_FILENO) == 1
        let stdout = FileHandle.standardOutput
        var texts: [String] = []
        var generated = 0
        let start = Date()
        do {
            for batchStart in stride(from: 0, to: count, by: batch) {
                let indices = Array(batchStart..<min(count, batchStart + batch))
                var sources = indices.map { RandomGenerator(seed: ItemSeed.derive(runSeed: runSeed, index: $0)) }
                var pending = ""   // streamed text not yet written (all of it when stdout is not a terminal)
                if streaming {
                    if batchStart > 0 { pending += "\n---------------\n" }
                    pending += prompt
                }
                let samples = try sampler.generate(prompt: promptTokens, length: length, options: options, sources: &sources) { _, tokens in
                    guard streaming else { return }
                    pending += ck.decode(tokens)
                    if terminal {   // one write, hence one flush, per token on a terminal
                        stdout.write(Data(pending.utf8))
                        pending = ""
                    }
                }
                generated += samples.reduce(0) { $0 + $1.count }
                if streaming {
                    stdout.write(Data(pending.utf8))
                } else {
                    for s in samples {
                        let text = prompt + ck.decode(s)
                        if toStdout {
                            stdout.write(Data(((texts.isEmpty ? "" : "\n---------------\n") + text).utf8))
                        }
                        texts.append(text)
                    }
                }
            }
        } catch let error as TextSamplingError {
            throw ValidationError(flagMessage(error))
        }
        let seconds = Date().timeIntervalSince(start)
        let rate = String(format: "%d characters in %.2f s, %.0f characters/s (batch %d, %@)", generated, seconds,
                          Double(generated) / max(seconds, 1e-9), batch, options.reuseContext ? "reuse-context approximation" : "exact")
        if toStdout {
            say("")
        } else if let out {
            try FileIO.writeAtomically(Array(texts.joined(separator: "\n---------------\n").utf8), to: out)
            stderr("wrote \(count) sample(s) to \(out): \(rate)\n")
        } else if let outDir {
            try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
            for (i, t) in texts.enumerated() { try FileIO.writeAtomically(Array(t.utf8), to: outDir + "/sample_\(i).txt") }
            stderr("wrote \(count) sample(s) to \(outDir)/sample_N.txt: \(rate)\n")
        }
    }
}

// MARK: - eval

struct EvalChar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "char",
        abstract: "Validation loss of a char checkpoint on a text (its last 10 %), in nats and bits per character.")

    @Option(help: "A char checkpoint (default: the shipped model).", completion: .file(extensions: ["safetensors"])) var checkpoint: String?
    @Option(help: "A UTF-8 text file or folder; the last 10 % is the validation split.", completion: .file()) var data: String
    @Option(parsing: .unconditional, help: "Heads, for a nanoGPT export whose metadata lacks n_head.") var heads: Int?
    @Option(help: "For a nanoGPT export without a vocabulary: the text it was trained on (its sorted characters).", completion: .file())
    var vocabFrom: String?

    func run() throws {
        guard let path = checkpoint ?? shippedCharCheckpoint() else { throw ValidationError("no --checkpoint given") }
        let ck = try CharCheckpoint.load(path: path, heads: heads)
        let corpus = try TextCorpus(path: data)
        let tokens = ck.vocabulary == corpus.vocabulary ? corpus.validationTokens
            : try ck.encode(corpus.decode(corpus.validationTokens))
        let start = Date()
        let loss: Double
        do {
            loss = try evaluateCharLoss(ck.model, tokens: tokens)
        } catch let TrainingError.invalidValue(field, value, requirement) where field == "tokens" {
            throw ValidationError("--data \(data): its validation split (the last 10 %) has \(value); it must have \(requirement)")
        }
        say(String(format: "val loss %.4f nats/char, %.4f bits/char (%d chars in blocks of %d, %@)", loss, loss / log(2.0),
                     tokens.count, ck.model.config.blockSize, formatDuration(Date().timeIntervalSince(start))))
    }
}

// MARK: - bench

struct BenchChar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "char",
        abstract: "Training and sampling throughput on synthetic tokens; bench/torch_ref.py (make bench) runs the same in PyTorch.")

    @Option(help: "baby or shakespeare.") var preset: String = "baby"
    @Option(parsing: .unconditional, help: "Warm-up steps.") var warmup: Int?
    @Option(help: "Timed steps per round.") var steps: Int?
    @Option(help: "Rounds (the median is reported).") var rounds: Int = 3
    @Flag(help: "Measure sampling instead of training: nanoGPT's generate (temperature 1, no top-k), exact unless --reuse-context.") var sample = false
    @Option(help: "Tokens per sequence per sampling round.") var sampleTokens: Int = 500
    @Option(help: "Sampling: sequences generated side by side.") var sampleBatch: Int = 1
    @Option(help: "Sampling: the model's context (block size) instead of the preset's.") var block: Int?
    @Flag(help: "Sampling: the half-window KV-cache rebuild (an approximation, not the model's own distribution).") var reuseContext = false
    @Option(help: "Sampling: time this char checkpoint instead of a freshly initialised preset model.", completion: .file())
    var checkpoint: String?
    @Option(help: "Vocabulary size.") var vocab: Int = 65

    func run() throws {
        guard let o = CharTrainingOptions.preset(preset) else { throw ValidationError("unknown preset \(preset)") }
        var config = o.modelConfig(vocabSize: vocab)
        config.dropout = 0
        if let block {
            guard sample else { throw ValidationError("--block is for --sample (training uses the preset's block)") }
            guard block >= 1 else { throw ValidationError("--block must be ≥ 1, got \(block)") }
            config.blockSize = block
        }
        guard sampleBatch >= 1 else { throw ValidationError("--sample-batch must be ≥ 1, got \(sampleBatch)") }
        if checkpoint != nil && !sample { throw ValidationError("--checkpoint is for --sample") }
        let model = try checkpoint.map { try CharCheckpoint.load(path: $0).model } ?? CharTransformer(config, seed: 1)
        config = model.config
        let B = o.batchSize, T = config.blockSize
        let tag = "gpt L\(config.layers) H\(config.heads) C\(config.embedding) T\(T)"
        say("forge \(tag): \(String(format: "%.2fM", Double(model.nonEmbeddingParameterCount) / 1e6)) params, threads \(Threads.count), BLAS \(BLAS.coreName)")
        if !sample {
            say(String(format: "FLOPS char-%@ %.6e per token (nanoGPT's estimate_mfu count: 6 N + 12 L C T)", preset, model.trainingFLOPsPerToken))
            let opt = AdamW(decayGroups(model.parameters, learningRate: 1e-3, weightDecay: 0.1), betas: (0.9, 0.99))
            var g = RandomGenerator(seed: 7)
            let pool: [([Int32], [Int32])] = (0..<4).map { _ in
                let d = (0..<(B * (T + 1))).map { _ in Int32(g.nextInt(below: vocab)) }
                var x = [Int32](), y = [Int32]()
                for b in 0..<B {
                    let s = b * (T + 1)
                    x += d[s..<(s + T)]
                    y += d[(s + 1)..<(s + T + 1)]
                }
                return (x, y)
            }
            var it = 0
            let warm = warmup ?? (preset == "baby" ? 3 : 1), n = steps ?? (preset == "baby" ? 10 : 3)
            // the training task's own step (nanoGPT's train.py: clip at 1, AdamW, zero_grad)
            let times = StepTiming.rounds(warmup: warm, steps: n, rounds: rounds) {
                let (x, y) = pool[it % pool.count]
                it += 1
                charTrainingStep(model, optimizer: opt, x: x, y: y, batch: B, length: T, gradClip: 1)
            }.map(\.secondsPerStep)
            let med = StepTiming.median(times)
            say(String(format: "%@ B%d train: %.2f ms/step, %.0f tokens/s (rounds: %@)", tag, B, med * 1000, Double(B * T) / med,
                         times.map { String(format: "%.1f", $0 * 1000) }.joined(separator: " ")))
            say(String(format: "RESULT char-%@ %.1f tokens/s", preset, Double(B * T) / med))
        } else {
            // As bench/torch_ref.py's char_sample (nanoGPT's generate): sampleBatch sequences from the prompt
            // [0], n new tokens each; a round is one generation, timed as a whole; one untimed round first
            // (of 20 tokens at most: the first tokens are the cheap, cached ones).
            let n = max(sampleTokens, 1), count = sampleBatch
            model.eval()
            let sampler = CharSampler(model: model)
            let options = TextSamplingOptions(temperature: 1, topK: nil, reuseContext: reuseContext)
            var g = RandomGenerator(seed: 3)
            _ = sampler.generate(prompt: [0], count: count, length: min(n, 20), options: options, generator: &g)
            let times = StepTiming.rounds(warmup: 0, steps: 1, rounds: rounds) {
                _ = sampler.generate(prompt: [0], count: count, length: n, options: options, generator: &g)
            }.map { $0.secondsPerStep / Double(n * count) }
            let med = StepTiming.median(times)
            let mode = reuseContext ? "reuse-context approximation" : "exact"
            say(String(format: "%@ sample %d tokens × batch %d (%@): %.3f ms/token, %.0f tokens/s (rounds: %@)", tag, n, count, mode,
                       med * 1000, 1 / med, times.map { String(format: "%.0f", 1 / $0) }.joined(separator: " ")))
            let name = checkpoint.map { "char-sample-" + URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent + "-b\(count)" }
                ?? "char-sample-b\(count)-block\(T)" + (reuseContext ? "-approx-reuse-context" : "")
            say(String(format: "RESULT %@ %.1f tokens/s", name, 1 / med))
        }
    }
}

// MARK: - import

struct ImportNanoGPT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nanogpt",
        abstract: "Turn a nanoGPT char model exported to safetensors (its state_dict) into a Forge char checkpoint.")

    @Argument(help: "The exported state dict (.safetensors).") var file: String
    @Option(parsing: .unconditional, help: "Attention heads (n_head), unless the file's metadata has n_head.") var heads: Int?
    @Option(help: "The text the model was trained on: the vocabulary is its sorted characters (nanoGPT's prepare.py).", completion: .file())
    var vocabFrom: String?
    @Option(help: "Where to write the Forge checkpoint.", completion: .file()) var out: String

    func run() throws {
        var ck = try CharCheckpoint.load(path: file, heads: heads)
        if let vocabFrom { ck = try ck.replacingVocabulary(TextCorpus(path: vocabFrom).vocabulary) }
        guard !ck.vocabulary.isEmpty else { throw ValidationError("\(file) holds no vocabulary; pass --vocab-from TEXT") }
        try CharCheckpoint.save(model: ck.model, vocabulary: ck.vocabulary, metadata: ["source": "nanogpt:" + file], to: out)
        let c = ck.model.config
        say("wrote \(out): \(c.layers) layers, \(c.heads) heads, \(c.embedding) embd, block \(c.blockSize), vocab \(c.vocabSize), bias \(c.bias)")
    }
}
