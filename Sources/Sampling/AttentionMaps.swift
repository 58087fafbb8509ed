import Foundation
import TensorCore
import DataIO
import Models
import Figures

// Looking inside a char transformer on one text: the attention pattern of every head, what the
// model predicts next, and the logit lens (the prediction read off the residual stream after every
// layer). The attention probabilities are recomputed here from q and k — softmax(q·kᵀ/√d + causal
// mask) in Double, from c_attn's output for the block's ln_1(x) — rather than taken from the
// attention op, whose fused forward pass never materialises them.

/// What a char model computes on one text: attention maps, next-character probabilities and the
/// logit lens.
public struct AttentionAnalysis: Sendable {
    /// The text's tokens (at most the model's block size).
    public let tokens: [Int32]
    /// Blocks and heads of the model.
    public let layers: Int, heads: Int
    /// attention[layer][head][query · T + key]: the probability that position `query` attends to
    /// `key` (0 for key > query; each row sums to 1).
    public let attention: [[[Double]]]
    /// lens[k][position]: the next-token distribution read off the residual stream after k blocks
    /// (k = 0: the embeddings) through ln_f and the output head; lens[layers] is the model's output.
    public let lens: [[[Double]]]

    /// T, the number of positions.
    public var length: Int { tokens.count }

    /// The model's next-token distribution after `position`.
    public func nextProbabilities(at position: Int) -> [Double] { lens[layers][position] }

    /// The `count` largest entries of `values` as (index, value), largest first.
    public static func top(_ values: [Double], _ count: Int) -> [(index: Int, value: Double)] {
        Array(values.enumerated().sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }
            .prefix(count).map { (index: $0.offset, value: $0.element) })
    }
}

/// Attention maps, per-position reports and the logit lens of a `CharTransformer`.
public enum AttentionMaps {
    /// Runs `model` (in evaluation mode, without a graph) on `tokens` (1 ≤ count ≤ block size).
    public static func analyse(_ model: CharTransformer, tokens: [Int32]) -> AttentionAnalysis {
        let c = model.config, T = tokens.count
        precondition(T >= 1 && T <= c.blockSize, "AttentionMaps: \(T) tokens for a block of \(c.blockSize)")
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        return withNoGrad {
            var x = model.transformer.wte(tokens, shape: [1, T]) + model.transformer.wpe((0..<T).map { Int32($0) }, shape: [T])
            var attention: [[[Double]]] = []
            var lens: [[[Double]]] = [nextTokenDistributions(model, residual: x, length: T)]
            for block in model.transformer.h {
                let qkv = block.attn.c_attn(block.ln_1(x))   // (1, T, 3C)
                attention.append(attentionProbabilities(qkv: qkv.scalars, length: T, embedding: c.embedding, heads: c.heads))
                x = block.forward(x)
                lens.append(nextTokenDistributions(model, residual: x, length: T))
            }
            return AttentionAnalysis(tokens: tokens, layers: c.layers, heads: c.heads, attention: attention, lens: lens)
        }
    }

    /// softmax(q·kᵀ/√d + causal mask) of every head from one sequence's fused projection `qkv`
    /// ((T, 3C) row-major: q, k, v side by side, each split into `heads` slices of C/heads), as
    /// [head][query · T + key].
    public static func attentionProbabilities(qkv: [Float], length T: Int, embedding C: Int, heads H: Int) -> [[Double]] {
        precondition(qkv.count == T * 3 * C && C % H == 0, "attentionProbabilities: \(qkv.count) values for T \(T), C \(C)")
        let D = C / H
        let scale = 1 / Double(D).squareRoot()
        return (0..<H).map { h in
            var p = [Double](repeating: 0, count: T * T)
            for t in 0..<T {
                var row = [Double](repeating: 0, count: t + 1)
                for s in 0...t {
                    var dot = 0.0
                    for d in 0..<D { dot += Double(qkv[t * 3 * C + h * D + d]) * Double(qkv[s * 3 * C + C + h * D + d]) }
                    row[s] = dot * scale
                }
                let m = row.max()!
                let e = row.map { Foundation.exp($0 - m) }
                let sum = e.reduce(0, +)
                for s in 0...t { p[t * T + s] = e[s] / sum }
            }
            return p
        }
    }

    /// softmax(lm_head(ln_f(residual))) at every position, as [position][token].
    static func nextTokenDistributions(_ model: CharTransformer, residual: Tensor, length T: Int) -> [[Double]] {
        let logits = model.lm_head(model.transformer.ln_f(residual)).scalars   // (1, T, V)
        let V = model.config.vocabSize
        return (0..<T).map { t in
            let row = logits[(t * V)..<((t + 1) * V)].map(Double.init)
            let m = row.max()!
            let e = row.map { Foundation.exp($0 - m) }
            let sum = e.reduce(0, +)
            return e.map { $0 / sum }
        }
    }

    /// How a character labels an axis or a report: a space as ␣, a newline as ↵, a tab as →.
    public static func visible(_ text: String) -> String {
        text.replacingOccurrences(of: " ", with: "␣").replacingOccurrences(of: "\n", with: "↵").replacingOccurrences(of: "\t", with: "→")
    }

    /// The layout of a heatmap grid: where panel (row, column) and cell (query, key) are.
    public struct GridLayout: Sendable, Equatable {
        /// Pixels per attention cell.
        public let cell: Int
        /// Whether the characters label the axes.
        public let labelled: Bool
        /// Top-left pixel of the heat cells of every panel, by [row][column].
        public let origins: [[(x: Int, y: Int)]]
        /// Size in pixels of the whole grid image (all panels, margins and the 24-pixel band at the top).
        public let width: Int, height: Int

        /// Equal when cell size, labelling, image size and every panel origin agree (tuples are not
        /// `Equatable`).
        public static func == (a: GridLayout, b: GridLayout) -> Bool {
            a.cell == b.cell && a.labelled == b.labelled && a.width == b.width && a.height == b.height
                && a.origins.map { $0.map { [$0.x, $0.y] } } == b.origins.map { $0.map { [$0.x, $0.y] } }
        }

        /// Center pixel of cell (query, key) of panel (row, column).
        public func center(row: Int, column: Int, query: Int, key: Int) -> (x: Int, y: Int) {
            let o = origins[row][column]
            return (o.x + key * cell + cell / 2, o.y + query * cell + cell / 2)
        }
    }

    /// Texts up to this many characters get their characters on both axes.
    public static let labelLimit = 48

    /// The layout for `rows` × `columns` panels of T × T cells.
    public static func layout(length T: Int, rows: Int, columns: Int) -> GridLayout {
        let labelled = T <= labelLimit
        // big enough cells to read a label beside each row (8 px for the 5×7 font), panels ≤ ~400 px
        let cell = labelled ? max(8, min(16, 384 / T)) : max(1, min(8, 256 / T))
        let margin = labelled ? 10 : 2      // room for the row and column labels
        let titleHeight = 12, gap = 12
        let panel = T * cell
        let panelWidth = margin + panel + gap, panelHeight = titleHeight + panel + margin + gap
        let origins = (0..<rows).map { r in
            (0..<columns).map { c in (x: gap + c * panelWidth + margin, y: 24 + r * panelHeight + titleHeight) }
        }
        return GridLayout(cell: cell, labelled: labelled, origins: origins,
                          width: gap + columns * panelWidth, height: 24 + rows * panelHeight)
    }

    /// The colour of probability p: dark blue (0) through magenta and orange to pale yellow (1);
    /// brightness grows with p.
    public static func color(_ p: Double) -> (Float, Float, Float) {
        let stops: [(Double, (Float, Float, Float))] = [
            (0, (0.02, 0.02, 0.12)), (0.25, (0.35, 0.05, 0.45)), (0.5, (0.75, 0.2, 0.35)), (0.75, (0.98, 0.55, 0.1)), (1, (1, 1, 0.75)),
        ]
        let v = Swift.max(0, Swift.min(1, p))
        for k in 1..<stops.count where v <= stops[k].0 {
            let (a, ca) = stops[k - 1], (b, cb) = stops[k]
            let f = Float((v - a) / (b - a))
            return (ca.0 + f * (cb.0 - ca.0), ca.1 + f * (cb.1 - ca.1), ca.2 + f * (cb.2 - ca.2))
        }
        return stops.last!.1
    }

    /// The colour of a masked (future) cell.
    public static let maskedColor: (Float, Float, Float) = (0.92, 0.92, 0.92)

    /// A grid of heatmaps, one panel per chosen (layer, head): rows = layers, columns = heads. A panel's
    /// row is a query position, its column the key it attends to; the characters label both axes when
    /// the text has at most `labelLimit` of them. `characters` are the text's characters (one per token).
    public static func heatmapGrid(_ analysis: AttentionAnalysis, characters: [String], layers: [Int], heads: [Int],
                                   title: String) -> (image: PixelImage, layout: GridLayout) {
        let T = analysis.length
        let layout = layout(length: T, rows: layers.count, columns: heads.count)
        var canvas = PixelCanvas(width: layout.width, height: layout.height)
        let ink: (Float, Float, Float) = (0.1, 0.1, 0.1)
        canvas.text(title, x: 12, y: 6, scale: 1, color: ink)
        let labels = characters.map(visible)
        for (r, layer) in layers.enumerated() {
            for (c, head) in heads.enumerated() {
                let o = layout.origins[r][c]
                canvas.text("LAYER \(layer) HEAD \(head)", x: o.x, y: o.y - 11, color: ink)
                let p = analysis.attention[layer][head]
                for q in 0..<T {
                    for k in 0..<T {
                        canvas.fill(x: o.x + k * layout.cell, y: o.y + q * layout.cell, width: layout.cell, height: layout.cell,
                                    color: k <= q ? color(p[q * T + k]) : maskedColor)
                    }
                }
                if layout.labelled {
                    let inset = (layout.cell - 6) / 2
                    for t in 0..<T {
                        let label = String(labels[t].prefix(1))
                        canvas.text(label, x: o.x - 8, y: o.y + t * layout.cell + (layout.cell - 7) / 2, color: ink)      // query
                        canvas.text(label, x: o.x + t * layout.cell + inset, y: o.y + T * layout.cell + 2, color: ink)   // key
                    }
                }
            }
        }
        return (canvas.image, layout)
    }

    /// The per-position report: for `position`, the 10 (or `attended`) most-attended earlier
    /// characters of every head, the model's top-5 next characters with their probabilities, and the
    /// logit lens (the top-1 next character after every layer). `decode` turns a token into its text.
    public static func report(_ analysis: AttentionAnalysis, position t: Int, layers: [Int], heads: [Int],
                              attended: Int = 10, decode: (Int32) -> String) -> String {
        let T = analysis.length
        precondition(t >= 0 && t < T, "AttentionMaps.report: position \(t) outside 0..<\(T)")
        func shown(_ token: Int32) -> String { "'" + visible(decode(token)) + "'" }
        var lines: [String] = []
        let context = analysis.tokens[..<(t + 1)].map { visible(decode($0)) }.joined()
        lines.append("position \(t) (character \(shown(analysis.tokens[t])), context \"\(context.suffix(40))\")")
        lines.append("most-attended earlier characters (position:char probability):")
        for layer in layers {
            for head in heads {
                let row = Array(analysis.attention[layer][head][(t * T)...(t * T + t)])
                let best = AttentionAnalysis.top(row, min(attended, t + 1))
                let items = best.map { String(format: "%d:%@ %.3f", $0.index, shown(analysis.tokens[$0.index]), $0.value) }
                lines.append("  layer \(layer) head \(head): " + items.joined(separator: "  "))
            }
        }
        lines.append("next character (top 5):")
        for (token, p) in AttentionAnalysis.top(analysis.nextProbabilities(at: t), 5) {
            lines.append(String(format: "  %@ %.4f", shown(Int32(token)), p))
        }
        lines.append("logit lens (top-1 next character after each layer, through ln_f and the head):")
        for k in 0...analysis.layers {
            let (token, p) = AttentionAnalysis.top(analysis.lens[k][t], 1)[0]
            lines.append(String(format: "  %@ %@ %.4f", k == 0 ? "embeddings" : "layer \(k - 1)   ", shown(Int32(token)), p))
        }
        return lines.joined(separator: "\n")
    }

    /// The logit lens over the whole text: one line per layer (embeddings first, then after each block)
    /// with the top-1 next character at every position.
    public static func lensTable(_ analysis: AttentionAnalysis, decode: (Int32) -> String) -> String {
        func named(_ name: String) -> String { name.padding(toLength: 16, withPad: " ", startingAt: 0) }
        var lines = [named("text") + analysis.tokens.map { visible(decode($0)) }.joined()]
        for k in 0...analysis.layers {
            let row = (0..<analysis.length).map { t in visible(decode(Int32(AttentionAnalysis.top(analysis.lens[k][t], 1)[0].index))) }
            lines.append(named(k == 0 ? "embeddings" : "after layer \(k - 1)") + row.joined())
        }
        return lines.joined(separator: "\n")
    }
}
