"""PyTorch reference for `forge train char --preset baby`: nanoGPT's train.py recipe on tinyshakespeare.

nanoGPT README's CPU example (config/train_shakespeare_char.py with --block_size=64 --batch_size=12
--n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0
--eval_iters=20): model.py's GPT (pre-LN, bias=False, tied head, N(0,0.02) init with the scaled
c_proj init), AdamW betas (0.9, 0.99), weight decay 0.1 on parameters with dim >= 2, lr 1e-3 with
100 warm-up iters and cosine decay to 1e-4, grad clip 1.0, 90/10 split of the sorted-character
vocabulary, train/val loss every 250 iters on 20 random batches. At the end it also prints the
val loss over the whole val split in consecutive blocks of 64 (what `forge eval char` prints), so
the noisy 20-batch estimate and the exact figure can both be compared.

Variants, to compare against `forge train char --preset baby --dropout P`, or against nanoGPT's code as
I recall it from early 2023, when the README's 1.88 was written (biases, no decay on the embeddings; not
checked against its history): --dropout P (on embeddings, attention probabilities, residual branches),
--bias, --no-embedding-decay.

  /work/torch-venv/bin/python bench/train_char_reference.py --data ../shared/data/text/tinyshakespeare.txt --seed 1337
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, bias, dropout):
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return F.dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, n_embd, n_head, bias, dropout):
        super().__init__()
        self.dropout = dropout
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, bias, dropout)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + F.dropout(self.c_proj(F.gelu(self.c_fc(self.ln_2(x)))), self.dropout, self.training)


class GPT(nn.Module):
    def __init__(self, vocab, block, n_layer, n_head, n_embd, bias=False, dropout=0.0):
        super().__init__()
        self.block = block
        self.dropout = dropout
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block, n_embd)
        self.h = nn.ModuleList([Block(n_embd, n_head, bias, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx, targets):
        B, T = idx.size()
        x = F.dropout(self.wte(idx) + self.wpe(torch.arange(T)), self.dropout, self.training)
        for b in self.h:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--preset", choices=["baby", "shakespeare"], default="baby",
                    help="shakespeare: train_shakespeare_char.py's 6/6/384, block 256, batch 64 (pass --dropout 0.2 --iters N)")
    ap.add_argument("--dropout", type=float, default=0.0, help="nanoGPT's dropout (embeddings, attention, residuals)")
    ap.add_argument("--bias", action="store_true", help="biases in Linear and LayerNorm (nanoGPT's bias=True)")
    ap.add_argument("--no-embedding-decay", action="store_true",
                    help="no weight decay on wte/wpe (as nanoGPT's earlier configure_optimizers, as recalled)")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    block, batch, lr, min_lr, warmup = 64, 12, 1e-3, 1e-4, 100
    layers, heads, embd = 4, 4, 128
    if a.preset == "shakespeare":
        block, batch, layers, heads, embd = 256, 64, 6, 6, 384
    text = open(a.data, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train, val = data[:n], data[n:]
    model = GPT(len(chars), block, layers, heads, embd, bias=a.bias, dropout=a.dropout)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    embedding = {"wte.weight", "wpe.weight", "lm_head.weight"} if a.no_embedding_decay else set()  # wte is tied to lm_head
    decay = [p for n, p in named if p.dim() >= 2 and n not in embedding]
    no_decay = [p for n, p in named if p.dim() < 2 or n in embedding]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.99))

    def get_batch(split):
        d = train if split == "train" else val
        ix = torch.randint(len(d) - block, (batch,))
        return torch.stack([d[i:i + block] for i in ix]), torch.stack([d[i + 1:i + 1 + block] for i in ix])

    @torch.no_grad()
    def estimate():
        model.eval()
        out = {}
        for split in ("train", "val"):
            out[split] = torch.stack([model(*get_batch(split)) for _ in range(20)]).mean().item()
        model.train()
        return out

    def get_lr(it):
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        if it > a.iters:
            return min_lr
        ratio = (it - warmup) / (a.iters - warmup)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)

    t0 = time.time()
    train_seconds = 0.0  # the steps alone, without the evaluations
    for it in range(a.iters + 1):
        for g in opt.param_groups:
            g["lr"] = get_lr(it)
        if it % 250 == 0:
            e = estimate()
            print(f"step {it}: train loss {e['train']:.4f}, val loss {e['val']:.4f}", flush=True)
        if it == a.iters:
            break
        t_step = time.time()
        x, y = get_batch("train")
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        train_seconds += time.time() - t_step
    elapsed = time.time() - t0
    model.eval()
    with torch.no_grad():
        blocks = (len(val) - 1) // block
        total = 0.0
        for s in range(0, blocks, 16):
            idx = torch.arange(s, min(s + 16, blocks))
            x = torch.stack([val[i * block:i * block + block] for i in idx])
            y = torch.stack([val[i * block + 1:i * block + block + 1] for i in idx])
            total += model(x, y).item() * x.numel()
    print(f"done: {a.iters} iters in {elapsed:.1f}s (training steps {a.iters * batch * block / train_seconds:.1f} tokens/s); whole val split {total / (blocks * block):.4f} nats/char")


if __name__ == "__main__":
    main()
