import Foundation
import TensorCore
import CKernels

// A character-level GPT, read top to bottom like nanoGPT's model.py: a config, then one small class per
// block (CausalSelfAttention, MLP, Block) and the model (CharTransformer = nanoGPT's GPT). Parameter
// names are nanoGPT's state_dict names (`transformer.h.0.attn.c_attn.weight`, …), so a nanoGPT
// checkpoint exported to safetensors loads as is. At the end: a KV cache and the cached forward pass
// that sampling uses (each new token costs O(context), not a full forward).

// MARK: - config

/// Hyper-parameters of a character-level GPT (nanoGPT's `GPTConfig`).
public struct CharTransformerConfig: Codable, Sendable, Equatable {
    /// Number of distinct tokens (characters).
    public var vocabSize: Int
    /// Longest context the model sees (number of learned positions).
    public var blockSize: Int
    /// Number of transformer blocks (`n_layer`).
    public var layers: Int
    /// Attention heads per block (`n_head`); must divide `embedding`.
    public var heads: Int
    /// Width of the residual stream (`n_embd`).
    public var embedding: Int
    /// Dropout probability on embeddings, attention probabilities, residual branches and the MLP (0 = none).
    public var dropout: Float
    /// Whether Linear and LayerNorm layers have biases.
    public var bias: Bool

    /// Stores the values as given and checks nothing: read `problem` before building a model
    /// (`CharTransformer.init` traps on a config that has one). The defaults, no dropout and no biases,
    /// are those of nanoGPT's train.py.
    public init(vocabSize: Int, blockSize: Int, layers: Int, heads: Int, embedding: Int, dropout: Float = 0, bias: Bool = false) {
        self.vocabSize = vocabSize
        self.blockSize = blockSize
        self.layers = layers
        self.heads = heads
        self.embedding = embedding
        self.dropout = dropout
        self.bias = bias
    }

    /// Why a configuration is unusable, or nil when it is fine.
    public var problem: String? {
        if vocabSize < 1 { return "vocabulary size must be positive, got \(vocabSize)" }
        if blockSize < 1 { return "block size must be positive, got \(blockSize)" }
        if layers < 1 { return "layers must be positive, got \(layers)" }
        if heads < 1 || embedding < 1 || embedding % heads != 0 {
            return "embedding (\(embedding)) must be a positive multiple of heads (\(heads))"
        }
        if !(dropout >= 0 && dropout < 1) { return "dropout must be in [0, 1), got \(dropout)" }
        return nil
    }

    /// The config as checkpoint metadata (nanoGPT's `model_args` names).
    public var metadata: [String: String] {
        ["n_layer": "\(layers)", "n_head": "\(heads)", "n_embd": "\(embedding)", "block_size": "\(blockSize)",
         "vocab_size": "\(vocabSize)", "dropout": "\(dropout)", "bias": bias ? "true" : "false"]
    }

    /// Reads a config from checkpoint metadata, filling what is missing from the tensor shapes
    /// (vocab and embedding from `transformer.wte.weight`, block size from `transformer.wpe.weight`,
    /// layers from the `transformer.h.N` names, bias from `transformer.ln_f.bias`). The number of heads
    /// cannot be seen in the shapes: it comes from metadata `n_head` or `heads`.
    public init(metadata: [String: String], tensorShapes: [String: [Int]], heads: Int? = nil) throws {
        func int(_ key: String) -> Int? { metadata[key].flatMap { Int($0) } }
        let wte = tensorShapes["transformer.wte.weight"] ?? tensorShapes["lm_head.weight"]
        let wpe = tensorShapes["transformer.wpe.weight"]
        let layerIndices = tensorShapes.keys.compactMap { name -> Int? in
            guard name.hasPrefix("transformer.h.") else { return nil }
            return Int(name.dropFirst("transformer.h.".count).prefix { $0 != "." })
        }
        guard let vocab = int("vocab_size") ?? wte?.first, let embd = int("n_embd") ?? wte?.last,
              let block = int("block_size") ?? wpe?.first, let layers = int("n_layer") ?? layerIndices.max().map({ $0 + 1 }) else {
            throw CharTransformerError("checkpoint holds no char-transformer weights (transformer.wte.weight, transformer.wpe.weight, transformer.h.N.…)")
        }
        guard let nHead = heads ?? int("n_head") else {
            throw CharTransformerError("checkpoint metadata has no n_head: the number of heads must be given")
        }
        let bias = metadata["bias"].map { $0 == "true" || $0 == "True" || $0 == "1" } ?? (tensorShapes["transformer.ln_f.bias"] != nil)
        self.init(vocabSize: vocab, blockSize: block, layers: layers, heads: nHead, embedding: embd,
                  dropout: metadata["dropout"].flatMap { Float($0) } ?? 0, bias: bias)
        if let p = problem { throw CharTransformerError("checkpoint config: " + p) }
    }
}

/// A problem with a char-transformer configuration or checkpoint, with a message meant for the user.
public struct CharTransformerError: Error, CustomStringConvertible {
    /// The whole message, e.g. "checkpoint metadata has no n_head: the number of heads must be given".
    public let description: String
    /// An error whose message is `description`.
    public init(_ description: String) { self.description = description }
}

/// nanoGPT's initialisation: N(0, 0.02) weights, zero biases.
private func normalLinear(_ inFeatures: Int, _ outFeatures: Int, bias: Bool, std: Float = 0.02,
                          generator: inout RandomGenerator) -> Linear {
    Linear(weight: Tensor.randn([outFeatures, inFeatures], std: std, generator: &generator),
           bias: bias ? Tensor.zeros([outFeatures]) : nil)
}

// MARK: - blocks

/// Multi-head causal self-attention: one fused q,k,v projection, attention read straight from it (with
/// dropout on the attention probabilities, nanoGPT's `attn_dropout`), an output projection and residual dropout.
public final class CausalSelfAttention: Module {
    /// True: `dropout` applies to the attention probabilities and to the output; false: neither.
    public var isTraining = true
    /// `c_attn`: the fused projection C → 3C whose output is [q | k | v] along the last axis, head h
    /// in columns h·D..<(h+1)·D of each (D = C / heads). `c_proj`: the output projection C → C, initialised with
    /// std 0.02/√(2·layers) because it writes into the residual stream (GPT-2's scaled init).
    public let c_attn: Linear, c_proj: Linear
    /// `heads`: the number of heads the C channels split into. `dropout`: the probability used for both
    /// the attention probabilities and the output (nanoGPT's `attn_dropout` and `resid_dropout`).
    public let heads: Int, dropout: Float

    init(_ config: CharTransformerConfig, generator: inout RandomGenerator) {
        let C = config.embedding
        c_attn = normalLinear(C, 3 * C, bias: config.bias, generator: &generator)
        // GPT-2's scaled init of the projections that write into the residual stream
        c_proj = normalLinear(C, C, bias: config.bias, std: 0.02 / Float(2 * config.layers).squareRoot(), generator: &generator)
        heads = config.heads
        dropout = config.dropout
    }


    /// x: (B, T, C) → (B, T, C).
    public func forward(_ x: Tensor) -> Tensor {
        let qkv = c_attn(x)                                   // (B, T, 3C)
        let y = causalSelfAttention(qkv: qkv, heads: heads, dropout: isTraining ? dropout : 0)  // (B, T, C), heads re-assembled
        return TensorCore.dropout(c_proj(y), p: dropout, training: isTraining)
    }

    /// `forward(norm(x))` with the LayerNorm fused into `c_attn`, so norm(x) is recomputed in backward
    /// instead of kept: x (B, T, C) → (B, T, C).
    public func forward(normalizing x: Tensor, with norm: LayerNorm) -> Tensor {
        let qkv = layerNormLinear(x, norm: norm, linear: c_attn)  // (B, T, 3C) = c_attn(norm(x))
        let y = causalSelfAttention(qkv: qkv, heads: heads, dropout: isTraining ? dropout : 0)  // (B, T, C)
        return TensorCore.dropout(c_proj(y), p: dropout, training: isTraining)
    }
}

/// The position-wise feed-forward network: C → 4C → GELU → C, then dropout.
public final class TransformerMLP: Module {
    /// True: `dropout` applies to the output; false: the MLP is deterministic.
    public var isTraining = true
    /// `c_fc`: the expansion C → 4C (before the GELU). `c_proj`: back 4C → C, with GPT-2's scaled init
    /// (std 0.02/√(2·layers)) since it writes into the residual stream.
    public let c_fc: Linear, c_proj: Linear
    /// The probability of zeroing each output element in training.
    public let dropout: Float

    init(_ config: CharTransformerConfig, generator: inout RandomGenerator) {
        let C = config.embedding
        c_fc = normalLinear(C, 4 * C, bias: config.bias, generator: &generator)
        c_proj = normalLinear(4 * C, C, bias: config.bias, std: 0.02 / Float(2 * config.layers).squareRoot(), generator: &generator)
        dropout = config.dropout
    }


    /// x: (B, T, C) → (B, T, C). gelu(c_fc(x)) is never kept whole: c_proj takes it a block of rows at a time.
    public func forward(_ x: Tensor) -> Tensor {
        let h = c_fc(x)  // (B, T, 4C), before the GELU
        return TensorCore.dropout(geluLinear(h, linear: c_proj), p: dropout, training: isTraining)
    }

    /// `forward(norm(x))` with the LayerNorm fused into `c_fc` (norm(x) recomputed in backward, not kept).
    public func forward(normalizing x: Tensor, with norm: LayerNorm) -> Tensor {
        let h = layerNormLinear(x, norm: norm, linear: c_fc)  // (B, T, 4C) = c_fc(norm(x)), before the GELU
        return TensorCore.dropout(geluLinear(h, linear: c_proj), p: dropout, training: isTraining)
    }
}

/// A pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).
public final class TransformerBlock: Module {
    /// Stored for `Module`; the block has no dropout of its own (`train()`/`eval()` set its children's).
    public var isTraining = true
    /// In order: the LayerNorm before attention, the attention, the LayerNorm before the MLP, the MLP
    /// (nanoGPT's names, so `transformer.h.N.ln_1.weight` and so on load as they are).
    public let ln_1: LayerNorm, attn: CausalSelfAttention, ln_2: LayerNorm, mlp: TransformerMLP

    init(_ config: CharTransformerConfig, generator: inout RandomGenerator) {
        ln_1 = LayerNorm(config.embedding, bias: config.bias)
        attn = CausalSelfAttention(config, generator: &generator)
        ln_2 = LayerNorm(config.embedding, bias: config.bias)
        mlp = TransformerMLP(config, generator: &generator)
    }


    /// x: (B, T, C) → (B, T, C). Each LayerNorm runs fused into the projection after it; what backward
    /// keeps per block is x, q·k·v, the attention output, x after attention and the MLP's pre-GELU h.
    public func forward(_ x: Tensor) -> Tensor {
        let x = x + attn.forward(normalizing: x, with: ln_1)
        return x + mlp.forward(normalizing: x, with: ln_2)
    }
}

/// nanoGPT's `transformer` ModuleDict: embeddings, blocks and the final LayerNorm.
public final class TransformerTrunk: Module {
    /// Stored for `Module`; the trunk has no forward of its own (`CharTransformer.forward` walks it).
    public var isTraining = true
    /// `wte`: token embeddings (vocab, C), whose weight is also `lm_head`'s (tied). `wpe`: learned
    /// position embeddings (block size, C), so no sequence can be longer than the block size. `h`: the
    /// `layers` blocks, in order. `ln_f`: the LayerNorm before the output head.
    public let wte: Embedding, wpe: Embedding, h: ModuleList<TransformerBlock>, ln_f: LayerNorm

    init(_ config: CharTransformerConfig, generator: inout RandomGenerator) {
        wte = Embedding(config.vocabSize, config.embedding, generator: &generator)
        wpe = Embedding(config.blockSize, config.embedding, generator: &generator)
        // nanoGPT draws N(0, 0.02) for both embeddings
        for e in [wte, wpe] {
            let w = Tensor.randn(e.weight.shape, std: 0.02, generator: &generator)
            e.weight.mutablePointer.update(from: w.pointer, count: w.count)
        }
        h = ModuleList((0..<config.layers).map { _ in TransformerBlock(config, generator: &generator) })
        ln_f = LayerNorm(config.embedding, bias: config.bias)
    }

}

// MARK: - model

/// A character-level GPT (nanoGPT's `GPT`): token + learned position embeddings, pre-LayerNorm blocks,
/// a final LayerNorm and an output head tied to the token embedding.
public final class CharTransformer: Module {
    /// True: dropout (`config.dropout`) on the summed embeddings and in every block; use `eval()`,
    /// which sets the children too, before measuring or sampling.
    public var isTraining = true
    /// The hyper-parameters it was built from (never has a `problem`); saved as checkpoint metadata.
    public let config: CharTransformerConfig
    /// Embeddings, blocks and final LayerNorm under nanoGPT's `transformer.` names.
    public let transformer: TransformerTrunk
    /// The output head; its weight *is* `transformer.wte.weight` (weight tying).
    public let lm_head: Linear

    /// A freshly initialised model (nanoGPT's init), drawing from `generator`.
    public init(_ config: CharTransformerConfig, generator: inout RandomGenerator) {
        precondition(config.problem == nil, "CharTransformer: \(config.problem ?? "")")
        self.config = config
        transformer = TransformerTrunk(config, generator: &generator)
        lm_head = Linear(weight: transformer.wte.weight, bias: nil)
    }

    /// A freshly initialised model drawing from a generator seeded with `seed`.
    public convenience init(_ config: CharTransformerConfig, seed: UInt64) {
        var g = RandomGenerator(seed: seed)
        self.init(config, generator: &g)
    }


    /// Parameters as nanoGPT counts them: tied weights once, position embeddings excluded.
    public var nonEmbeddingParameterCount: Int { parameterCount - transformer.wpe.weight.count }

    /// Floating-point operations of one training step per token, as nanoGPT's `estimate_mfu` counts
    /// them (the PaLM paper's appendix B): 6·N for the weights (N = `nonEmbeddingParameterCount`) plus
    /// 12·layers·C·T for attention's two products over the whole block.
    public var trainingFLOPsPerToken: Double {
        6 * Double(nonEmbeddingParameterCount) + 12 * Double(config.layers * config.embedding * config.blockSize)
    }

    /// Logits for every position: idx (B, T) row-major tokens → (B, T, vocab).
    public func forward(_ idx: [Int32], batch B: Int, length T: Int) -> Tensor {
        precondition(T >= 1 && T <= config.blockSize, "CharTransformer: sequence of length \(T) exceeds block size \(config.blockSize)")
        precondition(idx.count == B * T, "CharTransformer: \(idx.count) tokens do not fill (\(B), \(T))")
        let tok = transformer.wte(idx, shape: [B, T])                         // (B, T, C)
        let pos = transformer.wpe((0..<T).map { Int32($0) }, shape: [T])     // (T, C)
        var x = TensorCore.dropout(tok + pos, p: config.dropout, training: isTraining)  // (B, T, C)
        for block in transformer.h { x = block.forward(x) }
        return layerNormLinear(x, norm: transformer.ln_f, linear: lm_head)   // (B, T, vocab) = lm_head(ln_f(x))
    }

    /// Logits (B, T, vocab) and the mean cross-entropy against `targets` (B, T).
    public func forward(_ idx: [Int32], targets: [Int32], batch B: Int, length T: Int) -> (logits: Tensor, loss: Tensor) {
        precondition(targets.count == B * T, "CharTransformer: \(targets.count) targets for (\(B), \(T))")
        let logits = forward(idx, batch: B, length: T)
        let loss = crossEntropy(logits.reshaped([B * T, config.vocabSize]), targets: targets)
        return (logits, loss)
    }

    /// Copies weights by nanoGPT name into this model. Accepts a state dict that holds the tied weight
    /// under either or both of `transformer.wte.weight` and `lm_head.weight`, and ignores nanoGPT's
    /// causal-mask buffers (`….attn.bias` of rank 4) and names under `ignoringPrefixes` (optimizer state).
    public func load(_ tensors: [String: Tensor], ignoringPrefixes: [String] = ["optim.", "trainer."]) throws {
        var t = tensors.filter { name, value in
            !ignoringPrefixes.contains { name.hasPrefix($0) } && !(name.hasSuffix(".attn.bias") && value.rank == 4)
        }
        if t["lm_head.weight"] == nil, let w = t["transformer.wte.weight"] { t["lm_head.weight"] = w }
        if t["transformer.wte.weight"] == nil, let w = t["lm_head.weight"] { t["transformer.wte.weight"] = w }
        if let a = t["lm_head.weight"], let b = t["transformer.wte.weight"], a !== b, a.scalars != b.scalars {
            throw CharTransformerError("lm_head.weight and transformer.wte.weight differ, but this model ties them")
        }
        do { try loadState(t) } catch let e as StateLoadError { throw CharTransformerError(e.description) }
    }

    /// The weights by nanoGPT name, the tied weight once as `transformer.wte.weight`: the live
    /// tensors (not copies), for writing a plain state dict.
    public func weightsForSaving() -> [(String, Tensor)] {
        namedParameters()
    }
}

// MARK: - KV cache and the cached forward pass

/// Keys and values of every layer for the positions seen so far, so the next token only needs its own
/// q, k, v: attention over a cached context of length L costs O(L·C) per layer instead of a full forward.
public final class KVCache {
    /// Sequences decoded side by side.
    public let batch: Int
    /// Positions the cache can hold (the model's block size).
    public let capacity: Int
    /// Positions filled so far.
    public private(set) var length = 0
    let heads: Int, headDim: Int
    // per layer: (B, H, capacity, D)
    let keys: [Tensor], values: [Tensor]

    /// An empty cache for `batch` sequences of the model built from `config`: per layer, keys and
    /// values of (batch, heads, block size, C / heads), zeroed, so 2 · layers · batch · block size · C
    /// floats. `config` must be the model's own: `forwardCached` does not check that layers and heads
    /// match.
    public init(for config: CharTransformerConfig, batch: Int) {
        self.batch = batch
        capacity = config.blockSize
        heads = config.heads
        headDim = config.embedding / config.heads
        keys = (0..<config.layers).map { _ in Tensor.zeros([batch, config.heads, config.blockSize, config.embedding / config.heads]) }
        values = (0..<config.layers).map { _ in Tensor.zeros([batch, config.heads, config.blockSize, config.embedding / config.heads]) }
    }

    /// Forgets every cached position.
    public func reset() { length = 0 }

    fileprivate func advance(by n: Int) { length += n }
}

extension CharTransformer {
    /// Feeds `tokens` (B, n) — the next n positions of every sequence — through the model using and
    /// extending `cache`, and returns the logits of the last of them, (B, vocab). The first call with an
    /// empty cache is the prompt ("prefill"); later calls usually pass one token per sequence. The
    /// cache must have room: `cache.length + n <= blockSize`. Records no graph.
    public func forwardCached(_ tokens: [Int32], count n: Int, cache: KVCache) -> Tensor {
        let B = cache.batch, C = config.embedding, H = config.heads, D = C / H
        let pos0 = cache.length, L = pos0 + n, cap = cache.capacity
        precondition(n >= 1 && tokens.count == B * n, "forwardCached: \(tokens.count) tokens for batch \(B) × \(n)")
        precondition(L <= cap, "forwardCached: \(L) positions exceed the cache (block size \(cap))")
        return withNoGrad {
            let tok = transformer.wte(tokens, shape: [B, n])                                  // (B, n, C)
            let pos = transformer.wpe((pos0..<L).map { Int32($0) }, shape: [n])              // (n, C)
            var x = tok + pos                                                                 // (B, n, C)
            let scale = 1 / Float(D).squareRoot()
            var scores = [Float](repeating: 0, count: n * L)
            for (layer, block) in transformer.h.enumerated() {
                let qkv = block.attn.c_attn(block.ln_1(x))                                    // (B, n, 3C)
                let y = Tensor(uninitializedShape: [B, n, C])
                let kc = cache.keys[layer].mutablePointer, vc = cache.values[layer].mutablePointer
                let q = qkv.pointer
                scores.withUnsafeMutableBufferPointer { sb in
                    let S = sb.baseAddress!
                    for b in 0..<B {
                        for h in 0..<H {
                            let head = (b * H + h) * cap * D      // this head's (capacity, D) slab
                            let row0 = b * n * 3 * C + h * D       // q of (b, 0, h); k at +C, v at +2C
                            for t in 0..<n {                       // append k, v of the new positions
                                (kc + head + (pos0 + t) * D).update(from: q + row0 + t * 3 * C + C, count: D)
                                (vc + head + (pos0 + t) * D).update(from: q + row0 + t * 3 * C + 2 * C, count: D)
                            }
                            // S = q·Kᵀ (n, L); new row t sees cached positions 0 ... pos0 + t
                            sgemm(transA: false, transB: true, m: n, n: L, k: D, a: q + row0, lda: 3 * C,
                                  b: kc + head, ldb: D, c: S, ldc: L)
                            for t in 0..<n { softmaxRow(S + t * L, visible: pos0 + t + 1, count: L, scale: scale) }
                            // y = P·V (n, D), written into head h's columns of (B, n, C)
                            sgemm(transA: false, transB: false, m: n, n: D, k: L, a: S, lda: L, b: vc + head, ldb: D,
                                  c: y.mutablePointer + b * n * C + h * D, ldc: C)
                        }
                    }
                }
                x = x + block.attn.c_proj(y)
                x = x + block.mlp.c_proj(block.mlp.c_fc(block.ln_2(x)).gelu())
            }
            cache.advance(by: n)
            // only the last position's logits are needed: x[:, -1, :] (B, C) → (B, vocab)
            let last = Tensor(uninitializedShape: [B, C])
            for b in 0..<B { (last.mutablePointer + b * C).update(from: x.pointer + (b * n + n - 1) * C, count: C) }
            return lm_head(transformer.ln_f(last))
        }
    }
}

/// softmax(scale · row[0..<visible]) in place; positions from `visible` on get 0.
@inline(__always)
private func softmaxRow(_ row: UnsafeMutablePointer<Float>, visible: Int, count: Int, scale: Float) {
    var mx = -Float.infinity
    for c in 0..<visible where row[c] > mx { mx = row[c] }
    var sum: Float = 0
    for c in 0..<visible {
        let e = Foundation.exp((row[c] - mx) * scale)
        row[c] = e
        sum += e
    }
    let inv = 1 / sum
    for c in 0..<visible { row[c] *= inv }
    for c in visible..<count { row[c] = 0 }
}

// MARK: - window forward for exact sampling

/// The forward pass exact sampling runs once per new token when the context is full: B windows of the
/// last T tokens (positions 0..<T; positions are learned, so the window cannot slide) → the logits of
/// each window's last position, (B, vocab). Plain Float buffers allocated once and reused, no graph,
/// no Tensors. Per sequence: the embeddings; every layer but the last over all T rows (sgemm for the
/// projections, causal attention per head in `fk_causal_attention_rows`, C kernels for LayerNorm and
/// GELU); the last layer's keys and values over all rows but its query, attention, MLP, then the final
/// LayerNorm and lm_head for the last row only (`fk_matvec`). Results match
/// `forward(tokens, batch: B, length: T)[:, T-1, :]` to rounding.
///
/// Every sequence goes through the same calls with the same shapes whatever B is, so its logits are
/// the same bits at any batch size. Sequences are spread over the thread pool (one set of scratch
/// buffers per worker); a lone sequence instead runs blocks of its rows side by side, one join per
/// layer (`forwardOneByRows`).
public final class WindowInference {
    /// The model it runs. Embeddings, LayerNorms and biases are read from it on every call, but the
    /// projection weights were packed at `init`: after changing the weights (an optimizer step, a
    /// `load`) make a new WindowInference, or it mixes old and new weights.
    public let model: CharTransformer
    /// Windows per call.
    public let batch: Int
    /// Tokens per window (at most the block size).
    public let length: Int
    private let slots: Int
    /// How a lone sequence (batch 1, several threads) uses them: not at all, each op split over the pool,
    /// or blocks of rows (`forwardOneByRows`).
    private enum LoneSequence { case oneThread, splitOps, splitRows }
    private let loneSequence: LoneSequence
    /// Row blocks of `splitRows`: [0, …, length], cut on multiples of 8 rows (the GEMM kernel's tile).
    private let rowCuts: [Int]
    /// Attention scratch for each row block (H · fk_causal_attention_scratch floats).
    private let partScratch: [UnsafeMutablePointer<Float>]
    private let scratch: [UnsafeMutablePointer<Float>]  // one block of `floatsPerSlot` per slot
    private let logits: UnsafeMutablePointer<Float>      // (B, V)
    private let C: Int, H: Int, D: Int, V: Int
    /// Each layer's projection weights, transposed and packed once into the GEMM kernel's panels
    /// (`fk_packed_b_new`): they are multiplied once per token, and re-packing them per product cost
    /// a fifth of the time. The last layer packs only W_attn's key and value rows (it runs the rest
    /// for one row, with `fk_matvec`).
    private let packed: [PackedLayer]
    private struct PackedLayer {
        let attn: OpaquePointer, attnProj: OpaquePointer?, fc: OpaquePointer?, mlpProj: OpaquePointer?
    }

    /// Buffers for `batch` windows of `length` tokens (1 ≤ length ≤ block size).
    public init(model: CharTransformer, batch: Int, length: Int) {
        let config = model.config
        precondition(batch >= 1, "WindowInference: batch must be ≥ 1, got \(batch)")
        precondition(length >= 1 && length <= config.blockSize, "WindowInference: window of \(length) tokens, block size \(config.blockSize)")
        self.model = model
        self.batch = batch
        self.length = length
        C = config.embedding
        H = config.heads
        D = C / H
        V = config.vocabSize
        slots = max(1, min(Threads.count, batch))
        // A lone sequence on several threads runs blocks of its rows side by side, one join per layer.
        // Measured on the quiet machine (2 cores, 17:10 UTC, `forge bench char --sample --sample-batch 1`,
        // 128-wide model, alternating): splitting every op over the pool instead (about 25 joins per
        // token) ran block 256 at 651 / 534 tokens/s against 396 / 393 on one thread, and block 64 at
        // 1,253 / 941 against 1,026 / 1,036. `FORGE_SAMPLE_SPLIT=0|ops|rows` forces a choice, for A/B runs.
        let parts = slots == 1 ? Swift.min(Threads.count, length / 8) : 1
        switch ProcessInfo.processInfo.environment["FORGE_SAMPLE_SPLIT"] {
        case "0": loneSequence = .oneThread
        case "ops": loneSequence = slots == 1 && Threads.count > 1 ? .splitOps : .oneThread
        default: loneSequence = parts > 1 ? .splitRows : .oneThread   // "rows", or unset
        }
        let cut = { (part: Int) in part == parts ? length : (length * part / parts) / 8 * 8 }
        rowCuts = loneSequence == .splitRows ? (0...parts).map(cut) : [0, length]
        let attentionFloats = H * fk_causal_attention_scratch(length, D)
        partScratch = (loneSequence == .splitRows ? 0..<parts : 0..<0).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: attentionFloats)
            p.initialize(repeating: 0, count: attentionFloats)
            return p
        }
        let perSlot = WindowInference.floatsPerSlot(T: length, C: C, H: H)
        scratch = (0..<slots).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: perSlot)
            p.initialize(repeating: 0, count: perSlot)
            return p
        }
        logits = .allocate(capacity: batch * V)
        logits.initialize(repeating: 0, count: batch * V)
        let C = self.C, lastLayer = model.transformer.h.count - 1
        func pack(_ w: UnsafePointer<Float>, ld: Int, k: Int, n: Int) -> OpaquePointer {
            // op(B) = Wᵀ: W is (n, k) row-major
            guard let p = fk_packed_b_new(w, ld, 1, k, n) else { fatalError("WindowInference: out of memory packing a \(n)×\(k) weight") }
            return p
        }
        packed = model.transformer.h.enumerated().map { layer, block in
            let wAttn = block.attn.c_attn.weight.pointer
            if layer == lastLayer { return PackedLayer(attn: pack(wAttn + C * C, ld: C, k: C, n: 2 * C), attnProj: nil, fc: nil, mlpProj: nil) }
            return PackedLayer(attn: pack(wAttn, ld: C, k: C, n: 3 * C),
                               attnProj: pack(block.attn.c_proj.weight.pointer, ld: C, k: C, n: C),
                               fc: pack(block.mlp.c_fc.weight.pointer, ld: C, k: C, n: 4 * C),
                               mlpProj: pack(block.mlp.c_proj.weight.pointer, ld: 4 * C, k: 4 * C, n: C))
        }
    }

    deinit {
        for p in scratch + partScratch { p.deallocate() }
        logits.deallocate()
        for layer in packed { for p in [layer.attn, layer.attnProj, layer.fc, layer.mlpProj] { fk_packed_b_free(p) } }
    }

    // x, ln, att (T·C each), qkv (3TC), hidden (4TC), mean and rstd (T each), per-head attention scratch
    // (H blocks of fk_causal_attention_scratch), then the last row: x, ln, att (C each), hidden (4C), mean and
    // rstd (1 each), then a second qkv (3TC) for odd layers.
    private static func floatsPerSlot(T: Int, C: Int, H: Int) -> Int {
        13 * T * C + 2 * T + H * fk_causal_attention_scratch(T, C / H) + 7 * C + 2
    }

    /// The logits of the last position of each window: `tokens` holds B windows of T tokens, row-major.
    /// The returned (B, vocab) values stay valid until the next call.
    public func lastPositionLogits(_ tokens: UnsafeBufferPointer<Int32>) -> UnsafeBufferPointer<Float> {
        precondition(tokens.count == batch * length, "WindowInference: \(tokens.count) tokens for batch \(batch) × \(length)")
        let V = self.V
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= V }) {
            preconditionFailure("WindowInference: token \(bad) is outside the vocabulary of \(V)")
        }
        let tok = SendablePointer(tokens.baseAddress!), slots = self.slots, B = batch
        // one chunk per slot: with a single slot (one sequence, or one thread) this runs here, and the
        // work inside the sequence goes parallel only when it is big enough to pay for the joins
        if loneSequence == .splitRows {
            for b in 0..<B { forwardOneByRows(tok.p + b * length, into: logits + b * V) }
            return UnsafeBufferPointer(start: logits, count: batch * V)
        }
        let outer = fk_in_parallel_region()
        if slots == 1 && loneSequence == .oneThread { fk_set_parallel_region(1) }
        parallelFor(slots, grain: 1) { s, e in
            for slot in s..<e {
                for b in stride(from: slot, to: B, by: slots) { self.forwardOne(tok.p + b * self.length, slot: slot, into: self.logits + b * V) }
            }
        }
        fk_set_parallel_region(outer)
        return UnsafeBufferPointer(start: logits, count: batch * V)
    }

    /// `lastPositionLogits` from an array, copied into a (B, vocab) Tensor.
    public func lastPositionLogits(_ tokens: [Int32]) -> Tensor {
        let out = tokens.withUnsafeBufferPointer { lastPositionLogits($0) }
        return Tensor(shape: [batch, V], data: Array(out))
    }

    /// One slot's buffers, carved out of its scratch block.
    private struct Buffers {
        let x, ln, att, hid, mean, rstd, attScratch: UnsafeMutablePointer<Float>
        let xl, lnl, attl, hidl, meanl, rstdl: UnsafeMutablePointer<Float>
        /// (T, 3C) for even and odd layers: with row blocks, one block may write the next layer's
        /// queries, keys and values while another still reads this layer's keys and values.
        let qkvEven, qkvOdd: UnsafeMutablePointer<Float>
        func qkv(_ layer: Int) -> UnsafeMutablePointer<Float> { layer % 2 == 0 ? qkvEven : qkvOdd }
    }

    private func buffers(slot: Int) -> Buffers {
        let T = length, C = self.C
        let x = scratch[slot], ln = x + T * C, att = ln + T * C, qkv = att + T * C, hid = qkv + 3 * T * C
        let mean = hid + 4 * T * C, rstd = mean + T, attScratch = rstd + T
        let xl = attScratch + H * fk_causal_attention_scratch(T, D), lnl = xl + C, attl = lnl + C, hidl = attl + C
        return Buffers(x: x, ln: ln, att: att, hid: hid, mean: mean, rstd: rstd, attScratch: attScratch,
                       xl: xl, lnl: lnl, attl: attl, hidl: hidl, meanl: hidl + 4 * C, rstdl: hidl + 4 * C + 1,
                       qkvEven: qkv, qkvOdd: hidl + 4 * C + 2)
    }

    private func forwardOne(_ tok: UnsafeMutablePointer<Int32>, slot: Int, into out: UnsafeMutablePointer<Float>) {
        let b = buffers(slot: slot), T = length, last = model.transformer.h.count - 1
        embed(tok, rows: 0..<T, b)
        layerHead(0, rows: 0..<T, b)
        for layer in 0..<last {
            layerTail(layer, rows: 0..<T, b, attentionScratch: b.attScratch)
            layerHead(layer + 1, rows: 0..<T, b)
        }
        lastRow(b, into: out)
    }

    /// A lone sequence on several threads: its rows cut into `rowParts` blocks, each running every
    /// row-local stage of a layer (projections, MLP, LayerNorms, its rows' attention) on one thread, so a
    /// token costs one join per layer — attention needs every earlier row's keys and values — instead of
    /// one per op. Each element is computed by the same calls as in `forwardOne` (GEMM sums run in the
    /// same order whatever rows share the call), so the logits are the same bits.
    private func forwardOneByRows(_ tok: UnsafeMutablePointer<Int32>, into out: UnsafeMutablePointer<Float>) {
        let b = buffers(slot: 0), last = model.transformer.h.count - 1, cuts = rowCuts
        let tokens = SendablePointer(tok)
        parallelFor(cuts.count - 1, grain: 1) { s, e in
            for part in s..<e {
                self.embed(tokens.p, rows: cuts[part]..<cuts[part + 1], b)
                self.layerHead(0, rows: cuts[part]..<cuts[part + 1], b)
            }
        }
        for layer in 0..<last {
            parallelFor(cuts.count - 1, grain: 1) { s, e in
                for part in s..<e {
                    self.layerTail(layer, rows: cuts[part]..<cuts[part + 1], b, attentionScratch: self.partScratch[part])
                    self.layerHead(layer + 1, rows: cuts[part]..<cuts[part + 1], b)
                }
            }
        }
        lastRow(b, into: out)
    }

    /// x[rows] = wte[token] + wpe[position].
    private func embed(_ tok: UnsafeMutablePointer<Int32>, rows: Range<Int>, _ b: Buffers) {
        let C = self.C, wte = model.transformer.wte.weight.pointer, wpe = model.transformer.wpe.weight.pointer
        for t in rows {
            let e = wte + Int(tok[t]) * C, p = wpe + t * C, row = b.x + t * C
            for c in 0..<C { row[c] = e[c] + p[c] }
        }
    }

    /// ln[rows] = ln_1(x[rows]), then the rows' qkv = ln · W_attnᵀ (+ b) (T, 3C); in the last layer only
    /// their keys and values (W_attn's rows C..<3C).
    private func layerHead(_ layer: Int, rows: Range<Int>, _ b: Buffers) {
        let C = self.C, block = model.transformer.h[layer], r0 = rows.lowerBound, n = rows.count
        let threads = fk_in_parallel_region() != 0 ? 1 : Threads.count
        Self.layerNormRows(b.x + r0 * C, block.ln_1, out: b.ln + r0 * C, mean: b.mean + r0, rstd: b.rstd + r0, rows: n, cols: C)
        let bAttn = block.attn.c_attn.bias?.pointer
        let qkv = b.qkv(layer)
        if layer < model.transformer.h.count - 1 {
            fk_gemm_prepacked(b.ln + r0 * C, C, n, packed[layer].attn, qkv + r0 * 3 * C, 3 * C, 0, threads)
            if let bAttn { Self.addBias(bAttn, to: qkv + r0 * 3 * C, rows: n, cols: 3 * C, ld: 3 * C) }
        } else {
            fk_gemm_prepacked(b.ln + r0 * C, C, n, packed[layer].attn, qkv + r0 * 3 * C + C, 3 * C, 0, threads)
            if let bAttn { Self.addBias(bAttn + C, to: qkv + r0 * 3 * C + C, rows: n, cols: 2 * C, ld: 3 * C) }
        }
    }

    /// The rest of a layer (not the last) for its rows: causal attention of the rows (keys and values of
    /// every row up to each), x += att · W_projᵀ (+ b), x += gelu(ln_2(x) · W_fcᵀ + b) · W_projᵀ (+ b).
    private func layerTail(_ layer: Int, rows: Range<Int>, _ b: Buffers, attentionScratch: UnsafeMutablePointer<Float>) {
        let C = self.C, block = model.transformer.h[layer], r0 = rows.lowerBound, n = rows.count, weights = packed[layer]
        let threads = fk_in_parallel_region() != 0 ? 1 : Threads.count
        Self.attention(qkv: b.qkv(layer), T: rows.upperBound, C: C, H: H, first: r0, out: b.att + r0 * C, ldo: C, scratch: attentionScratch)
        fk_gemm_prepacked(b.att + r0 * C, C, n, weights.attnProj, b.x + r0 * C, C, 1, threads)
        if let bias = block.attn.c_proj.bias?.pointer { Self.addBias(bias, to: b.x + r0 * C, rows: n, cols: C, ld: C) }
        Self.layerNormRows(b.x + r0 * C, block.ln_2, out: b.ln + r0 * C, mean: b.mean + r0, rstd: b.rstd + r0, rows: n, cols: C)
        fk_gemm_prepacked(b.ln + r0 * C, C, n, weights.fc, b.hid + r0 * 4 * C, 4 * C, 0, threads)
        if let bias = block.mlp.c_fc.bias?.pointer { Self.addBias(bias, to: b.hid + r0 * 4 * C, rows: n, cols: 4 * C, ld: 4 * C) }
        Self.gelu(b.hid + r0 * 4 * C, count: n * 4 * C)
        fk_gemm_prepacked(b.hid + r0 * 4 * C, 4 * C, n, weights.mlpProj, b.x + r0 * C, C, 1, threads)
        if let bias = block.mlp.c_proj.bias?.pointer { Self.addBias(bias, to: b.x + r0 * C, rows: n, cols: C, ld: C) }
    }

    /// The last layer from its keys and values: the last row's query, attention, MLP, then ln_f and lm_head.
    private func lastRow(_ b: Buffers, into out: UnsafeMutablePointer<Float>) {
        let T = length, C = self.C, trunk = model.transformer, block = trunk.h[trunk.h.count - 1]
        let wAttn = block.attn.c_attn.weight.pointer, bAttn = block.attn.c_attn.bias?.pointer
        let qkv = b.qkv(trunk.h.count - 1), qLast = qkv + (T - 1) * 3 * C   // layerHead left ln_1 of every row in ln
        fk_matvec(wAttn, b.ln + (T - 1) * C, qLast, C, C, 0)
        if let bAttn { Self.addBias(bAttn, to: qLast, rows: 1, cols: C, ld: C) }
        Self.attention(qkv: qkv, T: T, C: C, H: H, first: T - 1, out: b.attl, ldo: C, scratch: b.attScratch)
        b.xl.update(from: b.x + (T - 1) * C, count: C)
        fk_matvec(block.attn.c_proj.weight.pointer, b.attl, b.xl, C, C, 1)
        if let bias = block.attn.c_proj.bias?.pointer { Self.addBias(bias, to: b.xl, rows: 1, cols: C, ld: C) }
        Self.layerNormRows(b.xl, block.ln_2, out: b.lnl, mean: b.meanl, rstd: b.rstdl, rows: 1, cols: C)
        fk_matvec(block.mlp.c_fc.weight.pointer, b.lnl, b.hidl, 4 * C, C, 0)
        if let bias = block.mlp.c_fc.bias?.pointer { Self.addBias(bias, to: b.hidl, rows: 1, cols: 4 * C, ld: 4 * C) }
        Self.gelu(b.hidl, count: 4 * C)
        fk_matvec(block.mlp.c_proj.weight.pointer, b.hidl, b.xl, C, 4 * C, 1)
        if let bias = block.mlp.c_proj.bias?.pointer { Self.addBias(bias, to: b.xl, rows: 1, cols: C, ld: C) }
        Self.layerNormRows(b.xl, trunk.ln_f, out: b.lnl, mean: b.meanl, rstd: b.rstdl, rows: 1, cols: C)
        fk_matvec(model.lm_head.weight.pointer, b.lnl, out, V, C, 0)  // lm_head has no bias (tied to wte)
    }

    private static func layerNormRows(_ x: UnsafeMutablePointer<Float>, _ norm: LayerNorm, out: UnsafeMutablePointer<Float>,
                                      mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        let px = SendablePointer(x), po = SendablePointer(out), pm = SendablePointer(mean), pr = SendablePointer(rstd)
        let w = SendablePointer(norm.weight.pointer), b = norm.bias.map { SendablePointer($0.pointer) }, eps = norm.eps
        parallelFor(rows, grain: max(1, 16_384 / cols)) { s, e in
            fk_layernorm_forward(px.p + s * cols, w.p, b?.p, po.p + s * cols, pm.p + s, pr.p + s, e - s, cols, eps)
        }
    }

    private static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let p = SendablePointer(x)
        parallelFor(count) { s, e in fk_gelu_erf(p.p + s, p.p + s, e - s) }
    }

    private static func addBias(_ bias: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int) {
        for r in 0..<rows {
            let row = y + r * ld
            for c in 0..<cols { row[c] += bias[c] }
        }
    }

    /// Causal attention of every head of a (T, 3C) qkv buffer for query rows first..<T, written to
    /// out (rows × C, heads side by side, row stride ldo); heads in parallel.
    private static func attention(qkv: UnsafeMutablePointer<Float>, T: Int, C: Int, H: Int, first: Int,
                                  out: UnsafeMutablePointer<Float>, ldo: Int, scratch: UnsafeMutablePointer<Float>) {
        let D = C / H, q = SendablePointer(qkv), o = SendablePointer(out), sc = SendablePointer(scratch)
        let headScratch = fk_causal_attention_scratch(T, D)
        parallelFor(H, grain: 1) { s, e in
            for h in s..<e {
                fk_causal_attention_rows(q.p + h * D, q.p + C + h * D, q.p + 2 * C + h * D, 3 * C,
                                         o.p + h * D, ldo, T, D, first, sc.p + h * headScratch)
            }
        }
    }
}
