"""PyTorch side of `make bench`: the same workloads as Forge's `forge bench …`, with the same
configurations as the reference scripts (DCGAN from pytorch/examples, the pytorch/examples VAE,
nanoGPT's char model and its presets). Synthetic data: these measure compute, not loading.

  python bench/torch_ref.py WORKLOAD [--threads 2] [--warmup N] [--steps N] [--rounds N]
                            [--block 64 --batch 1 --tokens 500]   (char-sample only)
  WORKLOAD: matmul1024 | dcgan32 | dcgan64 | cgan32-cbn | cgan32-cbn-sn | cgan32-stable | vae | char-baby | char-shakespeare | char-sample

Prints one line:  RESULT <workload> <rate> <unit>   (median over rounds of the per-round median step).
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def measure(step, warmup, steps, rounds):
    for _ in range(warmup):
        step()
    medians = []
    for _ in range(rounds):
        ts = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        medians.append(statistics.median(ts))
    return statistics.median(medians)


# ---------------------------------------------------------------- DCGAN (pytorch/examples/dcgan)
def dcgan_init(m):
    if "Conv" in type(m).__name__:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in type(m).__name__:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def dcgan(image, batch=64, nz=100, ngf=64, ndf=64, nc=3):
    ups = {32: 3, 64: 4}[image]
    ch = ngf * 2 ** (ups - 1)
    g = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
    for _ in range(ups - 1):
        g += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
        ch //= 2
    g += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
    d = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    ch = ndf
    for _ in range(ups - 1):
        d += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
        ch *= 2
    d += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False), nn.Sigmoid()]
    G, D = nn.Sequential(*g), nn.Sequential(*d)
    G.apply(dcgan_init)
    D.apply(dcgan_init)
    optD = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    real = torch.rand(batch, nc, image, image) * 2 - 1
    ones, zeros = torch.ones(batch), torch.zeros(batch)

    def step():
        D.zero_grad()
        bce(D(real).view(-1), ones).backward()
        fake = G(torch.randn(batch, nz, 1, 1))
        bce(D(fake.detach()).view(-1), zeros).backward()
        optD.step()
        G.zero_grad()
        bce(D(fake).view(-1), ones).backward()
        optG.step()

    return step, batch, "samples/s"


# ------------------------------------------- conditional DCGAN recipes (Forge's --recipe dcgan-cbn / stable)
def forge_init(m):
    """Forge's init of these layers: N(0, 0.02) weights, zero biases (D's projection E at the same scale)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d) and m.affine:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
    return m


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine, then a per-class scale (init 1) and shift (init 0): Forge's ConditionalBatchNorm2d."""

    def __init__(self, features, classes):
        super().__init__()
        self.bn = nn.BatchNorm2d(features, affine=False)
        self.weight = nn.Parameter(torch.ones(classes, features))
        self.bias = nn.Parameter(torch.zeros(classes, features))

    def forward(self, x, y):
        return self.bn(x) * self.weight[y][:, :, None, None] + self.bias[y][:, :, None, None]


class ConditionalGenerator(nn.Module):
    """z alone into the first transposed conv; the class through per-class BatchNorm after every one but the last."""

    def __init__(self, ups, nz, ngf, nc, classes):
        super().__init__()
        ch = ngf * 2 ** (ups - 1)
        self.convs, self.norms = nn.ModuleList([nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False)]), nn.ModuleList([ConditionalBatchNorm2d(ch, classes)])
        for _ in range(ups - 1):
            self.convs.append(nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False))
            self.norms.append(ConditionalBatchNorm2d(ch // 2, classes))
            ch //= 2
        self.last = nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False)

    def forward(self, z, y):
        h = z
        for conv, norm in zip(self.convs, self.norms):
            h = F.relu(norm(conv(h), y))
        return torch.tanh(self.last(h))


class ProjectionDiscriminator(nn.Module):
    """DCGAN's D to 4×4 features φ(x), the 4×4 conv ψ to one logit, plus ⟨E[y], Σφ(x)⟩ (Miyato & Koyama 2018).
    With spectral norm: every conv (with a bias, no BatchNorm) and E spectrally normalised, as Forge's."""

    def __init__(self, ups, ndf, nc, classes, sn):
        super().__init__()
        sn_wrap = torch.nn.utils.parametrizations.spectral_norm
        wrap = (lambda m: sn_wrap(forge_init(m))) if sn else forge_init  # initialise, then parametrise
        layers, ch = [wrap(nn.Conv2d(nc, ndf, 4, 2, 1, bias=sn)), nn.LeakyReLU(0.2, True)], ndf
        for _ in range(ups - 1):
            layers += [wrap(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=sn))] + ([] if sn else [forge_init(nn.BatchNorm2d(ch * 2))]) + [nn.LeakyReLU(0.2, True)]
            ch *= 2
        self.features = nn.Sequential(*layers)
        self.psi = wrap(nn.Conv2d(ch, 1, 4, 1, 0, bias=sn))
        self.embed = wrap(nn.Embedding(classes, ch))

    def forward(self, x, y):
        phi = self.features(x)
        return self.psi(phi).view(-1) + (phi.sum(dim=(2, 3)) * self.embed(y)).sum(dim=1)


def cgan(image, recipe, batch=64, nz=100, ngf=64, ndf=64, nc=3, classes=10):
    """One step of Forge's conditional recipes: dcgan-cbn (BCE, Adam 2e-4 (0.5, 0.999)), cbn-sn (the same with
    spectral norm in D) or stable (spectral norm in D, hinge, TTUR G 1e-4 / D 4e-4 betas (0, 0.9)); all with the
    EMA 0.999 of G's weights after the G step."""
    ups = {32: 3, 64: 4}[image]
    stable = recipe == "stable"
    G, D = ConditionalGenerator(ups, nz, ngf, nc, classes), ProjectionDiscriminator(ups, ndf, nc, classes, recipe in ("stable", "cbn-sn"))
    for m in G.modules():
        forge_init(m)
    ema = [p.detach().clone() for p in G.parameters()]
    lr_g, lr_d, betas = (1e-4, 4e-4, (0.0, 0.9)) if stable else (2e-4, 2e-4, (0.5, 0.999))
    optD = torch.optim.Adam(D.parameters(), lr=lr_d, betas=betas)
    optG = torch.optim.Adam(G.parameters(), lr=lr_g, betas=betas)
    real = torch.rand(batch, nc, image, image) * 2 - 1
    y = torch.arange(batch) % classes
    ones, zeros = torch.ones(batch), torch.zeros(batch)
    updates = [0]

    def step():
        D.zero_grad()
        fake = G(torch.randn(batch, nz, 1, 1), y)
        if stable:
            (F.relu(1 - D(real, y)).mean() + F.relu(1 + D(fake.detach(), y)).mean()).backward()
        else:
            F.binary_cross_entropy_with_logits(D(real, y), ones).backward()
            F.binary_cross_entropy_with_logits(D(fake.detach(), y), zeros).backward()
        optD.step()
        G.zero_grad()
        out = D(fake, y)
        (-out.mean() if stable else F.binary_cross_entropy_with_logits(out, ones)).backward()
        optG.step()
        with torch.no_grad():  # Forge's warmed-up decay min(0.999, (1 + n) / (10 + n))
            d = min(0.999, (1 + updates[0]) / (10 + updates[0]))
            updates[0] += 1
            torch._foreach_lerp_(ema, [p.detach() for p in G.parameters()], 1 - d)

    return step, batch, "samples/s"


# ---------------------------------------------------------------- VAE (pytorch/examples/vae)
def vae(batch=128):
    fc1, fc21, fc22, fc3, fc4 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20), nn.Linear(20, 400), nn.Linear(400, 784)
    params = [p for m in (fc1, fc21, fc22, fc3, fc4) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    pool = [torch.rand(batch, 784) for _ in range(8)]
    it = [0]

    def step():
        x = pool[it[0] % 8]
        it[0] += 1
        opt.zero_grad()
        h = F.relu(fc1(x))
        mu, logvar = fc21(h), fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = torch.sigmoid(fc4(F.relu(fc3(z))))
        loss = F.binary_cross_entropy(recon, x, reduction="sum") - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss.backward()
        opt.step()

    return step, batch, "samples/s"


# ---------------------------------------------------------------- char GPT (nanoGPT model.py, bias=False, dropout 0)
PRESETS = {"baby": (4, 4, 128, 64, 12), "shakespeare": (6, 6, 384, 256, 64)}  # layers, heads, embd, block, batch


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(c, bias=False), nn.LayerNorm(c, bias=False)
        self.c_attn, self.c_proj = nn.Linear(c, 3 * c, bias=False), nn.Linear(c, c, bias=False)
        self.fc, self.proj = nn.Linear(c, 4 * c, bias=False), nn.Linear(4 * c, c, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, block, layers, heads, embd):
        super().__init__()
        self.block = block
        self.wte, self.wpe = nn.Embedding(vocab, embd), nn.Embedding(block, embd)
        self.h = nn.ModuleList([Block(embd, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(embd, bias=False)
        self.lm_head = nn.Linear(embd, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
        for n, p in self.named_parameters():
            if n.endswith("c_proj.weight") or n.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))

    def forward(self, idx, targets=None):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for b in self.h:
            x = b(x)
        x = self.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :])
        return F.cross_entropy(self.lm_head(x).view(-1, self.lm_head.out_features), targets.view(-1))


def char_train(preset, vocab=65):
    L, H, C, T, B = PRESETS[preset]
    model = GPT(vocab, T, L, H, C)
    params = [p for p in model.parameters()]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.99))
    seqs = [torch.randint(vocab, (B, T + 1)) for _ in range(4)]
    pool = [(d[:, :-1].contiguous(), d[:, 1:].contiguous()) for d in seqs]  # (inputs, next-char targets)
    it = [0]

    def step():
        x, y = pool[it[0] % 4]
        it[0] += 1
        model(x, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, B * T, "tokens/s"


def char_sample(block=64, batch=1, tokens=500, vocab=65):
    """nanoGPT's `generate` (no KV cache: the context cropped to the last `block` tokens is re-run for
    every new token) for `batch` sequences side by side, from the baby preset's 4-layer 4-head 128-wide
    model with a `block`-token context. A round is one generation of `tokens` new tokens per sequence."""
    L, H, C, _, _ = PRESETS["baby"]
    model = GPT(vocab, block, L, H, C).eval()

    @torch.no_grad()
    def generate(n):
        idx = torch.zeros((batch, 1), dtype=torch.long)
        for _ in range(n):
            logits = model(idx if idx.size(1) <= block else idx[:, -block:])[:, -1, :]
            idx = torch.cat((idx, torch.multinomial(F.softmax(logits, dim=-1), 1)), dim=1)

    generate(min(tokens, 20))  # warm-up, as forge bench char --sample: a short generation, untimed
    return (lambda: generate(tokens)), batch * tokens, "tokens/s"


def matmul1024():
    x, y = torch.randn(1024, 1024), torch.randn(1024, 1024)
    return (lambda: x @ y), 2 * 1024 ** 3 / 1e9, "GFLOP/s"


WORKLOADS = {
    "matmul1024": (matmul1024, (3, 20, 3)),
    "dcgan32": (lambda: dcgan(32), (5, 10, 3)),
    "dcgan64": (lambda: dcgan(64), (3, 5, 3)),
    "cgan32-cbn": (lambda: cgan(32, "dcgan-cbn"), (5, 10, 3)),
    "cgan32-cbn-sn": (lambda: cgan(32, "cbn-sn"), (5, 10, 3)),
    "cgan32-stable": (lambda: cgan(32, "stable"), (5, 10, 3)),
    "vae": (vae, (20, 200, 3)),
    "char-baby": (lambda: char_train("baby"), (3, 10, 3)),
    "char-shakespeare": (lambda: char_train("shakespeare"), (1, 3, 3)),
    "char-sample": (None, (0, 1, 3)),  # made in main from --block/--batch/--tokens; warms up itself
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=sorted(WORKLOADS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--block", type=int, default=64, help="char-sample: context length")
    ap.add_argument("--batch", type=int, default=1, help="char-sample: sequences generated side by side")
    ap.add_argument("--tokens", type=int, default=500, help="char-sample: new tokens per sequence")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    make, (w, s, r) = WORKLOADS[a.workload]
    name = a.workload
    if a.workload == "char-sample":
        name = f"char-sample-b{a.batch}-block{a.block}"
        make = lambda: char_sample(a.block, a.batch, a.tokens)
    step, items, unit = make()
    sec = measure(step, a.warmup if a.warmup is not None else w, a.steps or s, a.rounds or r)
    print(f"RESULT {name} {items / sec:.2f} {unit}", flush=True)


if __name__ == "__main__":
    main()
