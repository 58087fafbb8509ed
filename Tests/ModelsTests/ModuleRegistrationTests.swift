import XCTest
import TensorCore
import Models

/// No model leaves a stored child module out of its tree (it would never be trained or saved).
final class ModuleRegistrationTests: XCTestCase {
    func testEveryModelRegistersEveryStoredChild() {
        var dcgan = DCGANConfig()
        (dcgan.ngf, dcgan.ndf, dcgan.classCount) = (4, 4, 3)
        var vaeMLP = VAEConfig(), vaeConv = VAEConfig()
        (vaeConv.arch, vaeConv.classCount, vaeConv.likelihood) = (.conv, 2, .gaussianLearned)
        _ = vaeMLP.latent
        var classifier = ClassifierConfig()
        (classifier.classCount, classifier.channels) = (3, 1)
        let g = DCGAN(dcgan)
        let models: [(String, any Module)] = [
            ("char", CharTransformer(CharTransformerConfig(vocabSize: 11, blockSize: 8, layers: 2, heads: 2, embedding: 8), seed: 1)),
            ("dcgan G", g.generator), ("dcgan D", g.discriminator),
            ("vae mlp", VAE(vaeMLP)), ("vae conv", VAE(vaeConv)),
            ("classifier", ImageClassifier(classifier).network),
            ("wavegan G", WaveGAN(WaveGANConfig()).generator), ("wavegan D", WaveGAN(WaveGANConfig()).discriminator),
            ("vae conv1d", VAE(VAEConfig.audio())),
        ]
        for (name, model) in models {
            XCTAssertEqual(model.unregisteredChildren(), [], name)
            XCTAssertGreaterThan(model.parameterCount, 0, name)
        }
    }

    /// nanoGPT's names come from the property names alone (no hand-written list).
    func testCharModelNamesComeFromItsProperties() {
        let model = CharTransformer(CharTransformerConfig(vocabSize: 11, blockSize: 8, layers: 2, heads: 2, embedding: 8), seed: 1)
        let names = model.stateTensors().map(\.0)
        XCTAssertEqual(Array(names.prefix(4)), ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
                                                "transformer.h.0.attn.c_attn.weight"])
        XCTAssertEqual(names.last, "lm_head.weight")
    }
}
