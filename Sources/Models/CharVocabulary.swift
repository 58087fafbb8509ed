import Foundation
import TensorCore

// Fine-tuning a char model on a new text: the new text's characters against the checkpoint's
// vocabulary, and the rows a vocabulary extension adds to the embedding and its tied head.

/// Characters of a text that a char model's vocabulary lacks.
public struct VocabularyMismatchError: Error, CustomStringConvertible, Equatable {
    /// The checkpoint whose vocabulary lacks them.
    public let path: String
    /// Every missing character, sorted by code point.
    public let missing: [Unicode.Scalar]

    /// The error for the checkpoint at `path` whose vocabulary lacks `missing` (sorted by code point).
    public init(path: String, missing: [Unicode.Scalar]) {
        self.path = path
        self.missing = missing
    }

    /// One line: how many characters are missing from `path`'s vocabulary, the first 20 of them shown as
    /// `CharCheckpoint.describe` prints them.
    public var description: String {
        let shown = missing.prefix(20).map(CharCheckpoint.describe).joined(separator: " ")
        let more = missing.count > 20 ? " … and \(missing.count - 20) more" : ""
        return "\(missing.count) character\(missing.count == 1 ? "" : "s") of the text \(missing.count == 1 ? "is" : "are") not in the vocabulary of \(path): \(shown)\(more)"
    }
}

extension CharCheckpoint {
    /// A character as it can be printed on one line: itself in quotes when printable, otherwise
    /// an escape ("\n", "\t", "U+00A0").
    public static func describe(_ scalar: Unicode.Scalar) -> String {
        switch scalar {
        case "\n": return "\"\\n\""
        case "\t": return "\"\\t\""
        case "\r": return "\"\\r\""
        case "\"": return "'\"'"
        case "\\": return "\"\\\\\""
        default: break
        }
        let hex = "U+" + String(format: "%04X", scalar.value)
        if scalar.value < 32 || scalar.value == 127 || scalar.properties.isWhitespace && scalar != " "
            || scalar.properties.generalCategory == .format || scalar.properties.generalCategory == .unassigned {
            return hex
        }
        return "\"\(Character(scalar))\""
    }

    /// The whole vocabulary as one escaped, printable line ("\n" for a newline, U+XXXX for other
    /// invisible characters).
    public static func printable(_ vocabulary: [Unicode.Scalar]) -> String {
        var out = ""
        for s in vocabulary {
            switch s {
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case "\\": out += "\\\\"
            default:
                let d = describe(s)
                out += d.hasPrefix("U+") ? "\\u{\(String(s.value, radix: 16, uppercase: true))}" : String(Character(s))
            }
        }
        return out
    }

    /// The characters of `characters` that are not in `vocabulary`, sorted by code point.
    public static func missingCharacters(_ characters: [Unicode.Scalar], vocabulary: [Unicode.Scalar]) -> [Unicode.Scalar] {
        let known = Set(vocabulary)
        return Array(Set(characters).subtracting(known)).sorted { $0.value < $1.value }
    }

    /// `vocabulary` followed by `added`: old tokens keep their ids, new ones come after them.
    public static func extendedVocabulary(_ vocabulary: [Unicode.Scalar], adding added: [Unicode.Scalar]) -> [Unicode.Scalar] {
        vocabulary + added.filter { !vocabulary.contains($0) }
    }

    /// The names of the vocabulary-sized weights: the token embedding and the head tied to it.
    public static let vocabularyWeightNames = ["transformer.wte.weight", "lm_head.weight"]

    /// `tensors` with the embedding and tied head grown from `oldCount` rows to those of `fresh`
    /// (a `[newCount, C]` weight initialized as training initializes one): rows below `oldCount` are
    /// the saved ones, the rest are `fresh`'s. Other tensors are returned as they are.
    public static func extendingVocabularyRows(_ tensors: [String: Tensor], oldCount: Int, fresh: Tensor) throws -> [String: Tensor] {
        var out = tensors
        let newCount = fresh.shape[0], width = fresh.shape[1]
        for name in vocabularyWeightNames {
            guard let saved = tensors[name] else { continue }
            guard saved.shape == [oldCount, width], newCount >= oldCount else {
                throw CharTransformerError("\(name) has shape \(saved.shape), expected [\(oldCount), \(width)] to extend to \(newCount) rows")
            }
            var values = saved.scalars
            values += fresh.scalars[(oldCount * width)...]
            out[name] = Tensor(shape: [newCount, width], data: values)
        }
        return out
    }

    /// The name of the learned position embedding, `[blockSize, C]`.
    public static let positionWeightName = "transformer.wpe.weight"

    /// `tensors` with the position embedding (or an optimizer moment of it, under `name`) grown from
    /// `oldBlock` rows to `newBlock`: row p is saved row p mod `oldBlock`, so the saved rows stay where
    /// they were and every later position starts as a copy of one the model was trained on (copies
    /// were not measured against fresh rows). A causal model therefore computes for the first
    /// `oldBlock` positions exactly what the parent computes; past them it starts confused (the python-char
    /// model shipped before 2026-12-04, 256 → 1,024: val loss 3.42 before fine-tuning, 0.88 after 900 steps of batch 8).
    public static func extendingPositionRows(_ tensors: [String: Tensor], oldBlock: Int, newBlock: Int,
                                             name: String = positionWeightName) throws -> [String: Tensor] {
        guard let saved = tensors[name] else { throw CharTransformerError("no \(name) to extend") }
        guard saved.shape.count == 2, saved.shape[0] == oldBlock, newBlock >= oldBlock, oldBlock >= 1 else {
            throw CharTransformerError("\(name) has shape \(saved.shape); cannot extend \(oldBlock) positions to \(newBlock)")
        }
        let width = saved.shape[1], rows = saved.scalars
        var values = [Float]()
        values.reserveCapacity(newBlock * width)
        for p in 0..<newBlock { values += rows[((p % oldBlock) * width)..<((p % oldBlock + 1) * width)] }
        var out = tensors
        out[name] = Tensor(shape: [newBlock, width], data: values)
        return out
    }
}
