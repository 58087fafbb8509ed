import Foundation
import TensorCore
import Models

// Sampling text from a char transformer. `sampleToken` turns one row of logits into a token (penalties,
// temperature, top-k, top-p, min-p, then an inverse-CDF draw from a uniform); `CharSampler` runs the
// model, by default exactly as nanoGPT's `generate` does (every token conditioned on the last
// min(length, block) tokens), with stop strings and streaming.

// MARK: - options

/// How the next character is drawn from the model's logits.
public struct TextSamplingOptions: Sendable, Equatable {
    /// Logits are divided by this before the softmax (< 1 sharper, > 1 flatter); 0 means greedy (argmax).
    /// Legal: finite and ≥ 0.
    public var temperature: Float
    /// Keep only the `topK` most likely tokens (nil = all). Legal: ≥ 0, where 0 also means all.
    public var topK: Int?
    /// Keep the smallest set of most likely tokens whose probability reaches `topP` (nil = all). Legal: (0, 1].
    public var topP: Float?
    /// Keep only tokens whose probability is at least `minP` times the most likely one's (nil or 0 = all).
    /// Legal: [0, 1).
    public var minP: Float?
    /// llama.cpp / Hugging Face repetition penalty on every token present in the recent context: a
    /// positive logit is divided by it, a negative one multiplied (1 = off, > 1 discourages repeats).
    /// Legal: finite and > 0.
    public var repetitionPenalty: Float
    /// OpenAI frequency penalty: a token's logit is lowered by this times its count in the recent context
    /// (0 = off; negative values encourage repeats). Legal: [-2, 2], OpenAI's range.
    public var frequencyPenalty: Float
    /// OpenAI presence penalty: a token's logit is lowered by this once if it occurs in the recent
    /// context (0 = off). Legal: [-2, 2].
    public var presencePenalty: Float
    /// How many of the most recent tokens (prompt included) the three penalties look at; nil = the model's
    /// block size, i.e. the context the model itself sees. Legal: ≥ 1.
    public var penaltyWindow: Int?
    /// Generation of a sequence ends as soon as its generated text ends with one of these; the stop string
    /// itself is not returned. A stop string must lie within the generated text (the prompt does not count).
    public var stop: [String]
    /// The approximation: when the context fills, rebuild the KV cache from the last block/2 tokens and
    /// continue with cached steps, so tokens after a rebuild see only block/2 … block characters. Much
    /// cheaper than the exact default (one window forward per token once the context is full), but it is
    /// not the model's own distribution.
    public var reuseContext: Bool

    /// Options with nanoGPT sample.py's defaults (temperature 0.8, top-k 200) and everything else off:
    /// exact sampling, no penalties, no stop strings. Stores the values unchecked; `validate()` (which
    /// `CharSampler` calls first) says which is out of range.
    public init(temperature: Float = 0.8, topK: Int? = 200, topP: Float? = nil, minP: Float? = nil,
                repetitionPenalty: Float = 1, frequencyPenalty: Float = 0, presencePenalty: Float = 0,
                penaltyWindow: Int? = nil, stop: [String] = [], reuseContext: Bool = false) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.frequencyPenalty = frequencyPenalty
        self.presencePenalty = presencePenalty
        self.penaltyWindow = penaltyWindow
        self.stop = stop
        self.reuseContext = reuseContext
    }

    /// Whether any of the three penalties is on (so the sampler must count recent tokens).
    public var usesPenalties: Bool { repetitionPenalty != 1 || frequencyPenalty != 0 || presencePenalty != 0 }

    /// Throws a `TextSamplingError` naming the first value outside its legal range (see each property).
    public func validate() throws {
        func fail(_ option: TextSamplingError.Option, _ problem: String) -> TextSamplingError {
            TextSamplingError(option: option, problem: problem)
        }
        guard temperature.isFinite, temperature >= 0 else {
            throw fail(.temperature, "must be a finite number ≥ 0 (0 = greedy), got \(temperature)")
        }
        if let k = topK, k < 0 { throw fail(.topK, "must be ≥ 0 (0 = all tokens), got \(k)") }
        if let p = topP, !(p > 0 && p <= 1) { throw fail(.topP, "must be in (0, 1], got \(p)") }
        if let p = minP, !(p >= 0 && p < 1) { throw fail(.minP, "must be in [0, 1), got \(p)") }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else {
            throw fail(.repetitionPenalty, "must be a finite number > 0 (1 = off), got \(repetitionPenalty)")
        }
        guard frequencyPenalty >= -2, frequencyPenalty <= 2 else {
            throw fail(.frequencyPenalty, "must be in [-2, 2] (0 = off), got \(frequencyPenalty)")
        }
        guard presencePenalty >= -2, presencePenalty <= 2 else {
            throw fail(.presencePenalty, "must be in [-2, 2] (0 = off), got \(presencePenalty)")
        }
        if let w = penaltyWindow, w < 1 { throw fail(.penaltyWindow, "must be ≥ 1 token, got \(w)") }
        if stop.contains("") { throw fail(.stop, "must not be empty") }
    }
}

/// A sampling value outside its legal range: which option and what is wrong with it. The CLI maps
/// `option` to its flag.
public struct TextSamplingError: Error, CustomStringConvertible, Equatable {
    /// The offending setting.
    public enum Option: String, Sendable, CaseIterable {
        case temperature, topK, topP, minP, repetitionPenalty, frequencyPenalty, presencePenalty, penaltyWindow, stop
        case length, count, prompt
    }
    /// Which setting is wrong; its `rawValue` is the Swift property name (`topK`), not a CLI flag.
    public let option: Option
    /// What is wrong, e.g. "must be in (0, 1], got 1.5".
    public let problem: String
    /// An error about `option`; `problem` should read after the option's name ("must be ≥ 1, got 0").
    public init(option: Option, problem: String) {
        self.option = option
        self.problem = problem
    }
    /// The option's name, then the problem: "topP must be in (0, 1], got 1.5".
    public var description: String { "\(option.rawValue) \(problem)" }
}

// MARK: - one token

/// Where the uniforms of the categorical draws come from: one value in [0, 1) per sampled token (greedy
/// decoding draws none). `RandomGenerator` is one; a test can replay a recorded stream.
public protocol UniformSource {
    /// The next uniform in [0, 1).
    mutating func nextUniform() -> Double
}

extension RandomGenerator: UniformSource {
    /// `nextDouble()`: 53 random bits in [0, 1).
    public mutating func nextUniform() -> Double { nextDouble() }
}

/// Applies the three penalties in place to `logits` (V values), given each token's count in the recent
/// context: first the repetition penalty (divide positive, multiply negative logits of present tokens),
/// then `logit -= count · frequency + (count > 0) · presence`.
public func applyPenalties(_ logits: UnsafeMutablePointer<Float>, count V: Int, recentCounts: [Int32],
                           options: TextSamplingOptions) {
    precondition(recentCounts.count == V, "applyPenalties: \(recentCounts.count) counts for \(V) logits")
    let r = options.repetitionPenalty, f = options.frequencyPenalty, p = options.presencePenalty
    for i in 0..<V where recentCounts[i] > 0 {
        var l = logits[i]
        if r != 1 { l = l > 0 ? l / r : l * r }
        l -= Float(recentCounts[i]) * f + p
        logits[i] = l
    }
}

/// Draws a token from one row of logits: penalties (when `recentCounts` is given), then greedy argmax if
/// the temperature is 0; otherwise temperature, top-k, softmax, top-p, min-p and an inverse-CDF draw with
/// one uniform u from `uniform`: the first token (in the kept order) whose cumulative probability exceeds u.
/// With no cut the kept order is the token order, which is what `torch.multinomial`-free reference code
/// computes from the same u (nanoGPT's sample.py order of temperature then top-k, plus top-p and min-p).
public func sampleToken(logits: UnsafePointer<Float>, count V: Int, options: TextSamplingOptions,
                        recentCounts: [Int32]? = nil, uniform: () -> Double) -> Int32 {
    var row = [Float](UnsafeBufferPointer(start: logits, count: V))
    if let recentCounts, options.usesPenalties {
        row.withUnsafeMutableBufferPointer { applyPenalties($0.baseAddress!, count: V, recentCounts: recentCounts, options: options) }
    }
    if options.temperature <= 0 {
        var best = 0
        for i in 1..<V where row[i] > row[best] { best = i }
        return Int32(best)
    }
    // (token, scaled logit), most likely first when a cut is needed
    var order = (0..<V).map { ($0, row[$0] / options.temperature) }
    let k = options.topK.map { $0 == 0 ? V : min($0, V) } ?? V
    let minP = options.minP ?? 0
    if k < V || options.topP != nil || minP > 0 { order.sort { $0.1 > $1.1 } }
    if k < V { order.removeLast(V - k) }  // nanoGPT keeps ties with the k-th value too; ties are vanishingly rare in floats
    let mx = order.map(\.1).max()!
    var probs = order.map { Double(Foundation.exp($0.1 - mx)) }
    var keep = probs.count
    if let p = options.topP, p < 1 {
        let total = probs.reduce(0, +)
        var cumulative = 0.0
        keep = 0
        for q in probs {
            cumulative += q / total
            keep += 1
            if cumulative >= Double(p) { break }
        }
    }
    if minP > 0 {
        // probs[0] is the largest (sorted), exp(0) = 1: p_i / p_max = probs[i]
        while keep > 1 && probs[keep - 1] < Double(minP) { keep -= 1 }
    }
    if keep < probs.count {
        probs.removeLast(probs.count - keep)
        order.removeLast(order.count - keep)
    }
    let total = probs.reduce(0, +)
    var u = uniform() * total
    for (i, q) in probs.enumerated() {
        u -= q
        if u < 0 { return Int32(order[i].0) }
    }
    return Int32(order[order.count - 1].0)
}

/// `sampleToken` drawing its uniform from `generator`.
public func sampleToken(logits: UnsafePointer<Float>, count V: Int, options: TextSamplingOptions,
                        recentCounts: [Int32]? = nil, generator: inout RandomGenerator) -> Int32 {
    sampleToken(logits: logits, count: V, options: options, recentCounts: recentCounts) { generator.nextDouble() }
}

// MARK: - stop strings

/// Watches one sequence's generated tokens for stop sequences and holds back the tokens that may be the
/// start of one, so that what it releases never contains (a part of) a stop string that then completes.
struct StopWatcher {
    let stops: [[Int32]]
    /// Generated tokens not yet released.
    private(set) var pending: [Int32] = []
    private(set) var stopped = false
    /// Which of `stops` ended the sequence, once `stopped`.
    private(set) var stoppedBy: Int?

    init(stops: [[Int32]]) { self.stops = stops }

    /// Adds a token; returns the tokens now safe to release. After a stop completes, `stopped` is set
    /// and the tokens before the stop string are released; the stop string is dropped.
    mutating func push(_ token: Int32) -> [Int32] {
        pending.append(token)
        if stops.isEmpty { defer { pending.removeAll() }; return pending }
        if let n = stops.firstIndex(where: { pending.count >= $0.count && pending.suffix($0.count).elementsEqual($0) }) {
            let stop = stops[n]
            (stopped, stoppedBy) = (true, n)
            let out = Array(pending.dropLast(stop.count))
            pending.removeAll()
            return out
        }
        // keep the longest suffix of pending that is a proper prefix of some stop string
        var hold = 0
        for stop in stops {
            for n in stride(from: min(stop.count - 1, pending.count), to: hold, by: -1)
            where pending.suffix(n).elementsEqual(stop.prefix(n)) {
                hold = n
                break
            }
        }
        let out = Array(pending.dropLast(hold))
        pending.removeFirst(out.count)
        return out
    }

    /// At the end of generation without a stop: everything held back.
    mutating func flush() -> [Int32] {
        defer { pending.removeAll() }
        return pending
    }
}

// MARK: - the sampler

/// One generated sequence: its new tokens (prompt and stop string not included) and the stop string that
/// ended it, nil when it ran to the requested length.
public struct GeneratedSequence: Sendable, Equatable {
    /// The generated token ids, in order: at most the requested length, fewer when a stop string ended
    /// the sequence (its tokens removed).
    public var tokens: [Int32]
    /// The element of `TextSamplingOptions.stop` that ended the sequence, or nil.
    public var stop: String?
    /// A sequence with these tokens and stop string (for tests and callers assembling results).
    public init(tokens: [Int32], stop: String?) { (self.tokens, self.stop) = (tokens, stop) }
}

/// Generates text from a `CharTransformer`. By default every token is conditioned on exactly the last
/// min(length, block) tokens, as nanoGPT's `generate` does: the prompt (its last block tokens) is fed once
/// into a KV cache and each new token is one cached step until the context first fills; from then on
/// every token costs one forward over the last `block` tokens (positions are learned, so the window cannot
/// slide) in a `WindowInference`: batched over the sequences, with no graph and buffers made once. With
/// `options.reuseContext` the cache is instead rebuilt from the last `blockSize / 2` tokens when it
/// fills (cheaper, approximate).
public final class CharSampler {
    /// The model it samples from, put in evaluation mode (dropout off) by `init`. Each generation reads
    /// the weights as they are then (the window forward packs a copy once the context first fills), so
    /// weights changed during a generation are seen only partly.
    public let model: CharTransformer
    /// Tokens kept on a rebuild in the `reuseContext` approximation.
    public let keepOnOverflow: Int
    /// Characters in token order; needed to turn stop strings into tokens (may be empty otherwise).
    public let vocabulary: [Unicode.Scalar]

    /// A sampler for `model`, switched to `eval()` here. `vocabulary` maps token ids to characters and is
    /// needed only for stop strings. `keepOnOverflow` (default block size / 2) is clamped to
    /// 1 ... block size, and matters only with `reuseContext`.
    public init(model: CharTransformer, vocabulary: [Unicode.Scalar] = [], keepOnOverflow: Int? = nil) {
        self.model = model
        self.vocabulary = vocabulary
        self.keepOnOverflow = min(max(keepOnOverflow ?? model.config.blockSize / 2, 1), model.config.blockSize)
        model.eval()
    }

    /// The stop strings of `options` as token sequences.
    func stopTokens(_ options: TextSamplingOptions) throws -> [[Int32]] {
        guard !options.stop.isEmpty else { return [] }
        guard !vocabulary.isEmpty else {
            throw TextSamplingError(option: .stop, problem: "needs the model's vocabulary, and this sampler has none")
        }
        let index = Dictionary(uniqueKeysWithValues: vocabulary.enumerated().map { ($1, Int32($0)) })
        return try options.stop.map { s in
            try s.unicodeScalars.map { c in
                guard let t = index[c] else {
                    throw TextSamplingError(option: .stop, problem: "\(String(reflecting: s)) holds \(String(reflecting: String(c))), which is not in the model's vocabulary, so it can never be generated")
                }
                return t
            }
        }
    }

    /// `generateSequences`, the tokens only.
    public func generate<Source: UniformSource>(prompt: [Int32], length: Int, options: TextSamplingOptions,
                                                sources: inout [Source],
                                                onEmit: (Int, [Int32]) -> Void = { _, _ in }) throws -> [[Int32]] {
        try generateSequences(prompt: prompt, length: length, options: options, sources: &sources, onEmit: onEmit).map(\.tokens)
    }

    /// Generates up to `length` tokens after `prompt` for `sources.count` sequences decoded side by side;
    /// sequence b draws its uniforms from `sources[b]` only, so its output does not depend on the others
    /// or on how many are decoded together. A sequence ends early when its text ends with a stop string.
    /// `onEmit(b, tokens)` receives sequence b's tokens as soon as they are final (a token that may start
    /// a stop string is held back until it is known not to). Returns the new tokens of each sequence
    /// (prompt and stop string not included), and the stop string that ended each (nil when it ran to `length`).
    public func generateSequences<Source: UniformSource>(prompt: [Int32], length: Int, options: TextSamplingOptions,
                                                         sources: inout [Source],
                                                         onEmit: (Int, [Int32]) -> Void = { _, _ in }) throws -> [GeneratedSequence] {
        try options.validate()
        let count = sources.count
        let block = model.config.blockSize, V = model.config.vocabSize
        guard length >= 1 else { throw TextSamplingError(option: .length, problem: "must be ≥ 1, got \(length)") }
        guard count >= 1 else { throw TextSamplingError(option: .count, problem: "must be ≥ 1, got \(count)") }
        guard !prompt.isEmpty else { throw TextSamplingError(option: .prompt, problem: "must hold at least one token") }
        if let t = prompt.first(where: { $0 < 0 || Int($0) >= V }) {
            throw TextSamplingError(option: .prompt, problem: "token \(t) is outside the vocabulary of \(V)")
        }
        let stops = try stopTokens(options)

        // Each sequence's last `block` tokens (its context), prompt included.
        var contexts = [[Int32]](repeating: Array(prompt.suffix(block)), count: count)
        var watchers = [StopWatcher](repeating: StopWatcher(stops: stops), count: count)
        var out = [[Int32]](repeating: [], count: count)
        var active = [Bool](repeating: true, count: count)
        var activeCount = count

        // Penalty counts over each sequence's last `window` tokens.
        let window = options.penaltyWindow ?? block
        var recent: [[Int32]] = [], counts: [[Int32]] = []
        if options.usesPenalties {
            recent = [[Int32]](repeating: Array(prompt.suffix(window)), count: count)
            var c = [Int32](repeating: 0, count: V)
            for t in recent[0] { c[Int(t)] += 1 }
            counts = [[Int32]](repeating: c, count: count)
        }

        let cache = KVCache(for: model.config, batch: count)
        func prefill(keep: Int) -> Tensor {
            cache.reset()
            let n = min(keep, contexts[0].count)
            var tokens: [Int32] = []
            tokens.reserveCapacity(count * n)
            for c in contexts { tokens += c.suffix(n) }
            return model.forwardCached(tokens, count: n, cache: cache)
        }
        // (count, V) logits of the step: from a Tensor of the cached path (kept alive here) or from
        // the window forward's own buffer
        var cachedLogits = prefill(keep: block)
        var logits = UnsafePointer(cachedLogits.pointer)
        // exact mode once the context is full: the window forward and its token buffer, made once
        var windowForward: WindowInference?
        var windows: [Int32] = []
        for step in 0..<length {
            var next = [Int32](repeating: 0, count: count)
            for b in 0..<count {
                guard active[b] else {
                    // a stopped sequence keeps its slot (repeating its last token) so the batch stays aligned
                    next[b] = contexts[b].last!
                    contexts[b].append(next[b])
                    if contexts[b].count > block { contexts[b].removeFirst() }
                    continue
                }
                let t = sampleToken(logits: logits + b * V, count: V, options: options,
                                    recentCounts: counts.isEmpty ? nil : counts[b]) { sources[b].nextUniform() }
                next[b] = t
                contexts[b].append(t)
                if contexts[b].count > block { contexts[b].removeFirst() }
                if !counts.isEmpty {
                    recent[b].append(t)
                    counts[b][Int(t)] += 1
                    if recent[b].count > window { counts[b][Int(recent[b].removeFirst())] -= 1 }
                }
                let released = watchers[b].push(t)
                if !released.isEmpty {
                    out[b] += released
                    onEmit(b, released)
                }
                if watchers[b].stopped {
                    active[b] = false
                    activeCount -= 1
                }
            }
            if step == length - 1 || activeCount == 0 { break }  // no logits needed after the last token
            if cache.length < block {
                cachedLogits = model.forwardCached(next, count: 1, cache: cache)
                logits = UnsafePointer(cachedLogits.pointer)
            } else if options.reuseContext {
                cachedLogits = prefill(keep: keepOnOverflow)
                logits = UnsafePointer(cachedLogits.pointer)
            } else {
                // exact: one forward over each sequence's last `block` tokens, last position only
                if windowForward == nil {
                    windowForward = WindowInference(model: model, batch: count, length: block)
                    windows = [Int32](repeating: 0, count: count * block)
                }
                windows.withUnsafeMutableBufferPointer { w in
                    for b in 0..<count { contexts[b].withUnsafeBufferPointer { (w.baseAddress! + b * block).update(from: $0.baseAddress!, count: block) } }
                }
                logits = windows.withUnsafeBufferPointer { windowForward!.lastPositionLogits($0) }.baseAddress!
            }
        }
        for b in 0..<count where active[b] {
            let rest = watchers[b].flush()
            if !rest.isEmpty {
                out[b] += rest
                onEmit(b, rest)
            }
        }
        return (0..<count).map { b in GeneratedSequence(tokens: out[b], stop: watchers[b].stoppedBy.map { options.stop[$0] }) }
    }

    /// `count` sequences, sequence b drawing from a generator seeded with the b-th output of `generator`.
    /// For callers that already checked their values: a bad option or prompt is a precondition failure.
    public func generate(prompt: [Int32], count: Int = 1, length: Int, options: TextSamplingOptions,
                         generator: inout RandomGenerator) -> [[Int32]] {
        var sources = (0..<count).map { _ in RandomGenerator(seed: generator.next()) }
        do {
            return try generate(prompt: prompt, length: length, options: options, sources: &sources)
        } catch {
            preconditionFailure("CharSampler: \(error)")
        }
    }
}
