import ArgumentParser
import Foundation
import Sampling

// The sampling flags `forge sample char` and `forge generate text` share, so both take the same values,
// check them the same way (`TextSamplingOptions.validate()`) and name the same flag in an error.

/// How to draw characters from a char model: the `TextSamplingOptions` as flags.
struct TextSamplingFlags: ParsableArguments {
    // `.unconditional` lets a value start with "-", so `--temperature -1` is reported as a bad value
    // rather than as a missing one.
    @Option(parsing: .unconditional, help: "Softmax temperature, ≥ 0 (0 = greedy).")
    var temperature: Float = 0.8
    @Option(parsing: .unconditional, help: "Keep the k most likely characters, ≥ 0 (0 = all).")
    var topK: Int = 200
    @Option(parsing: .unconditional, help: "Nucleus sampling: keep the most likely characters up to this total probability, in (0, 1].")
    var topP: Float?
    @Option(parsing: .unconditional, help: "Keep only characters at least this fraction as likely as the most likely one, in [0, 1) (0 = off).")
    var minP: Float?
    @Option(parsing: .unconditional, help: "Repetition penalty (llama.cpp/HF) on characters in the recent context: positive logits divided by it, negative ones multiplied; > 0, 1 = off.")
    var repetitionPenalty: Float = 1
    @Option(parsing: .unconditional, help: "Frequency penalty (OpenAI): logit -= this × the character's count in the recent context; in [-2, 2], 0 = off.")
    var frequencyPenalty: Float = 0
    @Option(parsing: .unconditional, help: "Presence penalty (OpenAI): logit -= this if the character occurs in the recent context; in [-2, 2], 0 = off.")
    var presencePenalty: Float = 0
    @Option(parsing: .unconditional, help: "Recent context of the penalties: the last N characters, prompt included (default: the model's block size).")
    var penaltyWindow: Int?
    @Option(parsing: .unconditionalSingleValue, help: "End a sample when its generated text ends with this string, which is not printed (repeatable; \\n and \\t are understood).")
    var stop: [String] = []
    @Flag(help: "Approximation, faster: when the context fills, restart it from the last block/2 characters, so later characters see only block/2 … block characters instead of the full block the model was trained on. Default: exact (nanoGPT's generate).")
    var reuseContext = false

    var options: TextSamplingOptions {
        TextSamplingOptions(temperature: temperature, topK: topK > 0 ? topK : nil, topP: topP, minP: minP,
                            repetitionPenalty: repetitionPenalty, frequencyPenalty: frequencyPenalty,
                            presencePenalty: presencePenalty, penaltyWindow: penaltyWindow,
                            stop: stop.map(unescapeControlCharacters), reuseContext: reuseContext)
    }

    func validate() throws {
        if topK < 0 { throw ValidationError("--top-k must be ≥ 0 (0 = all characters), got \(topK)") }
        do { try options.validate() } catch let error as TextSamplingError { throw ValidationError(flagMessage(error)) }
    }
}

/// A `TextSamplingError` in terms of the CLI flag it comes from, e.g. "--top-p must be in (0, 1], got 1.5".
func flagMessage(_ error: TextSamplingError) -> String {
    let flag: String
    switch error.option {
    case .temperature: flag = "--temperature"
    case .topK: flag = "--top-k"
    case .topP: flag = "--top-p"
    case .minP: flag = "--min-p"
    case .repetitionPenalty: flag = "--repetition-penalty"
    case .frequencyPenalty: flag = "--frequency-penalty"
    case .presencePenalty: flag = "--presence-penalty"
    case .penaltyWindow: flag = "--penalty-window"
    case .stop: flag = "--stop"
    case .length: flag = "--length"
    case .count: flag = "--count"
    case .prompt: flag = "--prompt"
    }
    return flag + " " + error.problem
}

/// `\n` and `\t` typed on a command line become a newline and a tab.
func unescapeControlCharacters(_ s: String) -> String {
    s.replacingOccurrences(of: "\\n", with: "\n").replacingOccurrences(of: "\\t", with: "\t")
}
