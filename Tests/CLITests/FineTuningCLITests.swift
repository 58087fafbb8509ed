import XCTest
import Foundation

/// `forge info` on tiny checkpoints and `forge train char --init`: lineage, vocabulary checks,
/// contradicting flags and freezing, as a user sees them.
final class FineTuningCLITests: CLITestCase {
    private func write(_ text: String, repeating count: Int, to path: String) throws -> String {
        try String(repeating: text, count: count).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private let tiny = ["--layers", "1", "--heads", "2", "--embd", "16", "--block", "8", "--batch", "4", "--warmup", "1",
                        "--eval-every", "5", "--eval-iters", "1", "--no-tensorboard"]

    /// A tiny parent run: its info, then a fine-tuned child whose info shows the lineage, and the
    /// errors: a new character, a contradicting shape flag, --init with --resume, a freeze pattern
    /// that matches nothing, and a file that is not a checkpoint.
    func testInfoAndCharFineTuning() throws {
        let dir = folder()
        let parentText = try write("to be or not to be, that is the question.\n", repeating: 40, to: dir + "/a.txt")
        let (s0, _, e0) = try run(["train", "char", "--data", parentText, "--out", dir + "/parent", "--iters", "6"] + tiny)
        XCTAssertEqual(s0, 0, e0)
        let parent = dir + "/parent/checkpoint.safetensors"

        let (s1, info, e1) = try run(["info", parent])
        XCTAssertEqual(s1, 0, e1)
        let lines = info.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("kind: char"), info)
        XCTAssertTrue(lines.contains { $0.hasPrefix("config: {") && $0.contains("\"layers\":1") }, info)
        // 16 characters: newline (escaped), space, ",", ".", and 12 letters
        XCTAssertTrue(lines.contains("vocabulary: 16 characters: \\n ,.abehinoqrstu"), info)
        XCTAssertTrue(lines.contains { $0.hasPrefix("step: 6, epoch ") }, info)
        XCTAssertTrue(lines.contains("lineage: none (trained from scratch)"), info)
        // 16·16 (wte) + 8·16 (wpe) + one block (2·16 + 16·48 + 16·16 + 16·64 + 64·16) + ln_f 16
        let expected = 16 * 16 + 8 * 16 + (2 * 16 + 16 * 48 + 16 * 16 + 16 * 64 + 64 * 16) + 16
        XCTAssertTrue(lines.contains("parameters: \(expected)"), info)
        XCTAssertTrue(lines.contains { $0.hasPrefix("  transformer.wte") && $0.hasSuffix(" \(16 * 16)") }, info)
        XCTAssertTrue(lines.contains("  lm_head.weight is tied to transformer.wte.weight"), info)

        // new text with characters the parent lacks: an error listing them, exit 2
        let childText = try write("To be, or not to be? 42 questions.\n", repeating: 40, to: dir + "/b.txt")
        let fine = ["train", "char", "--data", childText, "--init", parent, "--out", dir + "/child", "--iters", "4",
                    "--batch", "4", "--warmup", "1", "--eval-every", "2", "--eval-iters", "1", "--no-tensorboard"]
        let (s2, _, e2) = try run(fine)
        XCTAssertEqual(s2, 2, e2)
        XCTAssertTrue(e2.contains("4 characters of the text are not in the vocabulary") && e2.contains("\"T\"") && e2.contains("\"?\"")
                      && e2.contains("\"2\""), e2)
        // a shape flag that contradicts the checkpoint names both values
        let (s3, _, e3) = try run(fine + ["--extend-vocab", "--embd", "32"])
        XCTAssertEqual(s3, 2, e3)
        XCTAssertTrue(e3.contains("--embd 32 (the checkpoint has 16)"), e3)
        let (s4, _, e4) = try run(fine + ["--extend-vocab", "--resume"])
        XCTAssertEqual(s4, 2, e4)
        XCTAssertTrue(e4.contains("--init") && e4.contains("--resume"), e4)
        let (s5, _, e5) = try run(fine + ["--extend-vocab", "--freeze", "nothing.*"])
        XCTAssertEqual(s5, 2, e5)
        XCTAssertTrue(e5.contains("\"nothing.*\" matches no parameter"), e5)
        let (s6, _, e6) = try run(["train", "char", "--data", childText, "--freeze", "wte.*", "--out", dir + "/x", "--iters", "1"] + tiny)
        XCTAssertEqual(s6, 2, e6)
        XCTAssertTrue(e6.contains("--freeze") && e6.contains("--init"), e6)

        // the fine-tuned run: extended vocabulary, a frozen embedding, lineage in its checkpoints
        let (s7, out7, e7) = try run(fine + ["--extend-vocab", "--freeze", "wte.*"])
        XCTAssertEqual(s7, 0, e7)
        XCTAssertTrue(out7.contains("--extend-vocab: 4 new characters after the checkpoint's 16"), out7)
        XCTAssertTrue(out7.contains("--freeze wte.*: 1 parameter tensor (transformer.wte.weight)"), out7)
        let (s8, info8, e8) = try run(["info", dir + "/child"])
        XCTAssertEqual(s8, 0, e8)
        XCTAssertTrue(info8.contains("vocabulary: 20 characters: \\n ,.abehinoqrstu24?T"), info8)
        XCTAssertTrue(info8.contains("lineage: 1 ancestor, nearest first"), info8)
        XCTAssertTrue(info8.contains("  1. checkpoint.safetensors at step 6, sha256 "), info8)
        XCTAssertTrue(info8.contains("frozen: wte.*"), info8)
        XCTAssertTrue(info8.contains("file: \(dir)/child/best.safetensors"), "a run folder gives its best state: \(info8)")
        let (s8b, info8b, e8b) = try run(["info", dir + "/child/checkpoint.safetensors"])
        XCTAssertEqual(s8b, 0, e8b)
        XCTAssertTrue(info8b.contains("step: 4, epoch ") && info8b.contains("  1. checkpoint.safetensors at step 6, sha256 "), info8b)

        // resumed, the fine-tuned run keeps its vocabulary order, its lineage and its frozen embedding
        let (s8c, out8c, e8c) = try run(["train", "char", "--data", childText, "--out", dir + "/child", "--iters", "6", "--resume",
                                         "--no-tensorboard"])
        XCTAssertEqual(s8c, 0, e8c)
        XCTAssertTrue(out8c.contains("resumed from"), out8c)
        let (_, info8c, _) = try run(["info", dir + "/child/checkpoint.safetensors"])
        XCTAssertTrue(info8c.contains("step: 6, epoch ") && info8c.contains("vocabulary: 20 characters: \\n ,.abehinoqrstu24?T")
                      && info8c.contains("  1. checkpoint.safetensors at step 6, sha256 ") && info8c.contains("frozen: wte.*"), info8c)

        // not a checkpoint: a clear error naming the file, exit 2
        let bogus = dir + "/bogus.safetensors"
        try "not a safetensors file".write(toFile: bogus, atomically: true, encoding: .utf8)
        let (s9, _, e9) = try run(["info", bogus])
        XCTAssertEqual(s9, 2, e9)
        XCTAssertTrue(e9.hasPrefix("forge: error: checkpoint \(bogus)"), e9)
        let (s10, _, e10) = try run(["info", dir + "/missing.safetensors"])
        XCTAssertEqual(s10, 2, e10)
        XCTAssertTrue(e10.contains("no such file"), e10)
    }

    /// An IDX folder of `count` 28×28 noise images with labels cycling through `classes` (classes.txt).
    private func idxFolder(_ path: String, classes: [String], count: Int = 16) throws -> String {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        var state: UInt32 = 12345
        let pixels = (0..<(count * 28 * 28)).map { _ -> UInt8 in state = state &* 1_664_525 &+ 1_013_904_223; return UInt8(state >> 24) }
        try Data(be32(0x803) + be32(count) + be32(28) + be32(28) + pixels).write(to: URL(fileURLWithPath: path + "/train-images-idx3-ubyte"))
        try Data(be32(0x801) + be32(count) + (0..<count).map { UInt8($0 % classes.count) })
            .write(to: URL(fileURLWithPath: path + "/train-labels-idx1-ubyte"))
        try (classes.joined(separator: "\n") + "\n").write(toFile: path + "/classes.txt", atomically: true, encoding: .utf8)
        return path
    }

    /// A conditional GAN fine-tuned on data with other classes: an error listing the differences,
    /// a contradicting width named with both values, and with --new-classes a run whose checkpoint
    /// has the new classes and records its parent.
    /// `--extend-block`: needs --init and a --block longer than the checkpoint's; the run says how the
    /// new positions start and its checkpoint has the longer context.
    func testCharFineTuningToALongerContext() throws {
        let dir = folder()
        let text = try write("to be or not to be, that is the question.\n", repeating: 40, to: dir + "/a.txt")
        let (s0, _, e0) = try run(["train", "char", "--data", text, "--out", dir + "/parent", "--iters", "4"] + tiny)
        XCTAssertEqual(s0, 0, e0)
        let fine = ["train", "char", "--data", text, "--init", dir + "/parent", "--out", dir + "/longer", "--iters", "3",
                    "--batch", "4", "--warmup", "1", "--eval-every", "3", "--eval-iters", "1", "--no-tensorboard"]
        let (sx, _, ex) = try run(["train", "char", "--data", text, "--extend-block", "--block", "16", "--out", dir + "/x", "--iters", "1"])
        XCTAssertEqual(sx, 2, ex)
        XCTAssertTrue(ex.contains("--extend-block is a fine-tuning flag: it needs --init CKPT"), ex)
        for (flags, message) in [(["--extend-block"], "--extend-block needs --block N"),
                                 (["--extend-block", "--block", "8"], "--block 8 is the checkpoint's context already"),
                                 (["--extend-block", "--block", "4"], "may lengthen it, not shorten it to 4"),
                                 (["--block", "16"], "--block 16 (the checkpoint has 8)")] {
            let (status, _, err) = try run(fine + flags)
            XCTAssertEqual(status, 2, "\(flags): \(err)")
            XCTAssertTrue(err.contains(message), "\(flags): \(err)")
        }
        let (s1, out1, e1) = try run(fine + ["--extend-block", "--block", "16"])
        XCTAssertEqual(s1, 0, e1)
        XCTAssertTrue(out1.contains("--extend-block: context 8 → 16 positions"), out1)
        let (s2, info, e2) = try run(["info", dir + "/longer/checkpoint.safetensors"])
        XCTAssertEqual(s2, 0, e2)
        XCTAssertTrue(info.contains("\"blockSize\":16"), info)
        XCTAssertTrue(info.contains("lineage: 1 ancestor"), info)
    }

    /// The char-only fine-tuning flags are refused by gan and vae, not ignored.
    func testImageModelsRefuseTheCharOnlyFineTuningFlags() throws {
        let dir = folder()
        for kind in ["gan", "vae"] {
            for flag in ["--extend-vocab", "--extend-block"] {
                let (status, _, err) = try run(["train", kind, "--data", dir, "--init", dir + "/none.safetensors", flag, "--out", dir + "/x"])
                XCTAssertEqual(status, 2, "\(kind) \(flag): \(err)")
                XCTAssertTrue(err.contains("\(flag) is not supported by train \(kind)"), "\(kind) \(flag): \(err)")
            }
        }
    }

    func testConditionalGANFineTuningOnNewClasses() throws {
        let dir = folder()
        let shape = ["--size", "32", "--ngf", "4", "--ndf", "4", "--nz", "8", "--embed", "4", "--batch", "8", "--no-tensorboard"]
        let a = try idxFolder(dir + "/a", classes: ["cat", "dog"])
        let (s0, _, e0) = try run(["train", "gan", "--data", a, "--steps", "2", "--out", dir + "/parent"] + shape)
        XCTAssertEqual(s0, 0, e0)
        let (s1, info, e1) = try run(["info", dir + "/parent"])
        XCTAssertEqual(s1, 0, e1)
        XCTAssertTrue(info.contains("kind: gan") && info.contains("classes: 2: \"cat\", \"dog\""), info)
        XCTAssertTrue(info.contains("\n  generator ") && info.contains("\n  discriminator "), info)

        let b = try idxFolder(dir + "/b", classes: ["cat", "bird", "fish"], count: 24)
        let fine = ["train", "gan", "--data", b, "--init", dir + "/parent", "--steps", "2", "--batch", "8", "--no-tensorboard",
                    "--out", dir + "/child"]
        let (s2, _, e2) = try run(fine)
        XCTAssertEqual(s2, 2, e2)
        XCTAssertTrue(e2.contains("only in the checkpoint: dog; only in the data: bird, fish") && e2.contains("--new-classes"), e2)
        let (s3, _, e3) = try run(fine + ["--new-classes", "--ngf", "8"])
        XCTAssertEqual(s3, 2, e3)
        XCTAssertTrue(e3.contains("--ngf 8 (the checkpoint has 4)"), e3)
        let (s4, out4, e4) = try run(fine + ["--new-classes", "--freeze", "discriminator.main.0.*"])
        XCTAssertEqual(s4, 0, e4)
        XCTAssertTrue(out4.contains("class-dependent tensors start afresh"), out4)
        XCTAssertTrue(out4.contains("--freeze discriminator.main.0.*: "), out4)
        let (s5, info5, e5) = try run(["info", dir + "/child"])
        XCTAssertEqual(s5, 0, e5)
        XCTAssertTrue(info5.contains("classes: 3: \"cat\", \"bird\", \"fish\""), info5)
        XCTAssertTrue(info5.contains("  1. checkpoint.safetensors at step 2, sha256 "), info5)
    }

    /// A VAE fine-tuned on other data: the latent size is the checkpoint's (a contradicting --latent
    /// names both values), the run records its parent, and the sound trainers refuse --init.
    func testVAEFineTuning() throws {
        let dir = folder()
        let a = try idxFolder(dir + "/a", classes: ["cat", "dog"])
        let b = try idxFolder(dir + "/b", classes: ["cat", "bird", "fish"], count: 24)
        let small = ["--latent", "4", "--hidden", "16", "--batch", "8", "--steps", "2", "--no-tensorboard"]
        let (s0, _, e0) = try run(["train", "vae", "--data", a, "--out", dir + "/parent"] + small)
        XCTAssertEqual(s0, 0, e0)
        let fine = ["train", "vae", "--data", b, "--init", dir + "/parent", "--steps", "2", "--batch", "8", "--no-tensorboard",
                    "--out", dir + "/child"]
        let (s1, _, e1) = try run(fine + ["--latent", "7"])
        XCTAssertEqual(s1, 2, e1)
        XCTAssertTrue(e1.contains("--latent 7 (the checkpoint has 4)"), e1)
        let (s2, _, e2) = try run(fine + ["--new-classes"])
        XCTAssertEqual(s2, 2, e2)
        XCTAssertTrue(e2.contains("is unconditional"), e2)
        let (s3, out3, e3) = try run(fine + ["--freeze", "fc1.*"])
        XCTAssertEqual(s3, 0, e3)
        XCTAssertTrue(out3.contains("fine-tuning from \(dir)/parent/checkpoint.safetensors"), out3)
        let (s4, info, e4) = try run(["info", dir + "/child"])
        XCTAssertEqual(s4, 0, e4)
        XCTAssertTrue(info.contains("kind: vae") && info.contains("\"latent\":4") && info.contains("lineage: 1 ancestor"), info)
        let (s5, _, e5) = try run(["train", "classifier", "--data", a, "--init", dir + "/parent", "--out", dir + "/c", "--steps", "1"])
        XCTAssertEqual(s5, 2, e5)
        XCTAssertTrue(e5.contains("--init is not supported by train classifier"), e5)
    }
}
