import ArgumentParser
import Foundation
import DataIO
import Models
import Sampling

// `forge explain char`: attention heatmaps, a per-position report and the logit lens of a char model
// on one text. The computation is Sampling's `AttentionMaps`; this file only parses and prints.

struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Look inside a trained model.",
        subcommands: [ExplainChar.self])
}

struct ExplainChar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "char",
        abstract: "Attention heatmaps, the next-character prediction and the logit lens of a char model on a text.",
        discussion: """
            The PNG holds one heatmap per layer × head (or only --layer / --head): row = the position that \
            attends (query), column = the earlier position it attends to (key), brighter = more attention; \
            grey cells are the future, which a causal model cannot see. Texts of at most \
            \(AttentionMaps.labelLimit) characters get their characters on both axes (␣ = space, ↵ = newline). \
            The report on stdout gives, for --position, the 10 most-attended earlier characters of every \
            shown head, the model's top-5 next characters, and the logit lens: the top-1 next character read \
            off the residual stream after each layer through ln_f and the output head. Works for any char \
            checkpoint, nanoGPT imports included.
            """)

    @Option(help: "A char checkpoint (default: the shipped checkpoints/shakespeare-char.safetensors).", completion: .file(extensions: ["safetensors"])) var checkpoint: String?
    @Option(help: "The text to look at (its last block-size characters when longer).") var text: String
    @Option(help: "Show only this layer (0-based).") var layer: Int?
    @Option(help: "Show only this head (0-based).") var head: Int?
    @Option(help: "The position (0-based) the report is about (default: the last character).") var position: Int?
    @Option(help: "The heatmap PNG to write.", completion: .file()) var out: String = "attention.png"
    @Option(help: "Heads, for a nanoGPT export whose metadata lacks n_head.") var heads: Int?
    @Option(help: "For a nanoGPT export without a vocabulary: the text it was trained on (its sorted characters).", completion: .file())
    var vocabFrom: String?

    func run() throws {
        let ck = try openCharCheckpoint(checkpoint, heads: heads, vocabFrom: vocabFrom)
        let c = ck.model.config
        var tokens: [Int32]
        do { tokens = try ck.encode(text) } catch let e as UnknownCharacterError {
            throw ValidationError("--text: \(e.description)")
        }
        guard !tokens.isEmpty else { throw ValidationError("--text is empty") }
        if tokens.count > c.blockSize {
            say("note: the text has \(tokens.count) characters but the model sees \(c.blockSize); using the last \(c.blockSize)")
            tokens = Array(tokens.suffix(c.blockSize))
        }
        if let layer, !(0..<c.layers).contains(layer) {
            throw ValidationError("--layer must be in 0...\(c.layers - 1) (the model has \(c.layers) layers), got \(layer)")
        }
        if let head, !(0..<c.heads).contains(head) {
            throw ValidationError("--head must be in 0...\(c.heads - 1) (the model has \(c.heads) heads), got \(head)")
        }
        let T = tokens.count
        let at = position ?? T - 1
        guard (0..<T).contains(at) else {
            throw ValidationError("--position must be in 0...\(T - 1) (the text has \(T) characters), got \(at)")
        }
        let analysis = AttentionMaps.analyse(ck.model, tokens: tokens)
        let layers = layer.map { [$0] } ?? Array(0..<c.layers)
        let headList = head.map { [$0] } ?? Array(0..<c.heads)
        let characters = tokens.map { ck.decode([$0]) }
        let name = URL(fileURLWithPath: checkpoint ?? shippedCharCheckpoint() ?? "model").lastPathComponent
        let (image, _) = AttentionMaps.heatmapGrid(analysis, characters: characters, layers: layers, heads: headList,
                                                   title: "attention of \(name) (rows attend to columns)")
        let folder = URL(fileURLWithPath: out).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try ImageCodec.writePNG(image, to: out)
        say("model: \(c.layers) layers, \(c.heads) heads, \(c.embedding) embd, block \(c.blockSize); text: \(T) characters")
        say(AttentionMaps.report(analysis, position: at, layers: layers, heads: headList) { ck.decode([$0]) })
        say("logit lens over the text (the character under each position is the prediction of the next one):")
        say(AttentionMaps.lensTable(analysis) { ck.decode([$0]) })
        say("heatmaps: \(out) (\(image.width)×\(image.height), \(layers.count) × \(headList.count) panels"
            + (T <= AttentionMaps.labelLimit ? ", characters on the axes)" : "; unlabelled above \(AttentionMaps.labelLimit) characters)"))
    }
}
