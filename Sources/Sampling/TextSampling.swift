import Foundation
import TensorCore
import Models

/// How the next character is drawn from the model's logits.
public struct TextSamplingOptions: Sendable, Equatable {
    /// Logits are divided by this before the softmax (< 1 sharper, > 1 flatter); 0 means greedy (argmax).
    public var temperature: Float
    /// Keep only the `topK` most likely tokens (nil = all).
    public var topK: Int?
    /// Keep the smallest set of most likely tokens whose probability reaches `topP` (nil = all).
    public var topP: Float?

    public init(temperature: Float = 0.8, topK: Int? = 200, topP: Float? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
    }
}

/// Draws a token from one row of logits: temperature, then top-k, then top-p (nucleus), then a
/// categorical draw from `generator` (nanoGPT's sample.py order, plus top-p).
public func sampleToken(logits: UnsafePointer<Float>, count V: Int, options: TextSamplingOptions,
                        generator: inout RandomGenerator) -> Int32 {
    if options.temperature <= 0 {
        var best = 0
        for i in 1..<V where logits[i] > logits[best] { best = i }
        return Int32(best)
    }
    // (token, scaled logit), most likely first when a cut is needed
    var order = (0..<V).map { ($0, logits[$0] / options.temperature) }
    let k = min(max(options.topK ?? V, 1), V)
    if k < V || options.topP != nil { order.sort { $0.1 > $1.1 } }
    if k < V { order.removeLast(V - k) }  // nanoGPT keeps ties with the k-th value too; ties are vanishingly rare in floats
    let mx = order.map(\.1).max()!
    var probs = order.map { Double(Foundation.exp($0.1 - mx)) }
    var total = probs.reduce(0, +)
    if let p = options.topP, p < 1 {
        var cumulative = 0.0, keep = 0
        for q in probs {
            cumulative += q / total
            keep += 1
            if cumulative >= Double(p) { break }
        }
        probs.removeLast(probs.count - keep)
        order.removeLast(order.count - keep)
        total = probs.reduce(0, +)
    }
    var u = generator.nextDouble() * total
    for (i, q) in probs.enumerated() {
        u -= q
        if u < 0 { return Int32(order[i].0) }
    }
    return Int32(order[order.count - 1].0)
}

/// Generates text from a `CharTransformer` with a KV cache: the prompt is fed once, then every new
/// token costs one cached step (O(context)). When the context reaches the block size, the cache is
/// rebuilt from the last `blockSize / 2` tokens (positions are learned, so the window cannot simply
/// slide); between rebuilds each token sees all of its context up to the block size.
public final class CharSampler {
    public let model: CharTransformer
    /// Tokens kept when the context overflows the block size.
    public let keepOnOverflow: Int

    public init(model: CharTransformer, keepOnOverflow: Int? = nil) {
        self.model = model
        self.keepOnOverflow = min(max(keepOnOverflow ?? model.config.blockSize / 2, 1), model.config.blockSize)
        model.eval()
    }

    /// Generates `length` tokens after `prompt` for `count` sequences decoded together. `onStep`
    /// receives the `count` new tokens of each step as they are drawn (for streaming). Returns the
    /// new tokens of each sequence (the prompt not included).
    public func generate(prompt: [Int32], count: Int = 1, length: Int, options: TextSamplingOptions,
                         generator: inout RandomGenerator, onStep: ([Int32]) -> Void = { _ in }) -> [[Int32]] {
        precondition(!prompt.isEmpty, "CharSampler: the prompt must hold at least one token")
        precondition(count >= 1, "CharSampler: count must be positive")
        let block = model.config.blockSize, V = model.config.vocabSize
        for t in prompt { precondition(t >= 0 && Int(t) < V, "CharSampler: prompt token \(t) outside the vocabulary of \(V)") }
        let cache = KVCache(for: model.config, batch: count)
        var sequences = [[Int32]](repeating: prompt, count: count)
        var out = [[Int32]](repeating: [], count: count)
        // prefill: the (last block of the) prompt, the same for every sequence
        func prefill(keep: Int) -> Tensor {
            cache.reset()
            let n = min(keep, sequences[0].count)
            var tokens: [Int32] = []
            tokens.reserveCapacity(count * n)
            for s in sequences { tokens += s.suffix(n) }
            return model.forwardCached(tokens, count: n, cache: cache)
        }
        var logits = prefill(keep: block)
        for step in 0..<length {
            var next = [Int32](repeating: 0, count: count)
            for b in 0..<count {
                next[b] = sampleToken(logits: logits.pointer + b * V, count: V, options: options, generator: &generator)
                sequences[b].append(next[b])
                out[b].append(next[b])
            }
            onStep(next)
            if step == length - 1 { break }  // no logits needed after the last token
            if cache.length >= block {
                logits = prefill(keep: keepOnOverflow)
            } else {
                logits = model.forwardCached(next, count: 1, cache: cache)
            }
        }
        return out
    }
}
