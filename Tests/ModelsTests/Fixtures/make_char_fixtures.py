"""Fixtures for Tests/ModelsTests/CharTransformerTests.swift: a small random nanoGPT model (model.py's
structure and parameter names), its state dict in safetensors, and the logits, loss and gradients
PyTorch computes for a fixed batch.

    /work/torch-venv/bin/python Tests/ModelsTests/Fixtures/make_char_fixtures.py

Writes, for variant in (bias, nobias):
  char_<variant>_model.safetensors     the state dict (tied weight: `bias` saves only lm_head.weight,
                                       `nobias` saves both names, as nanoGPT's state_dict() holds them);
                                       metadata n_layer/n_embd/block_size/vocab_size (+ n_head for nobias)
  char_<variant>_expected.safetensors  idx, targets (I64, (B, T)), logits (B, T, V), loss, grad.<name>
"""
import math
import os

import torch
import torch.nn as nn
from torch.nn import functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


class LayerNorm(nn.Module):
    """nanoGPT's LayerNorm with an optional bias."""
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, bias):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.n_head, self.n_embd = n_head, n_embd

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd, bias):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, bias):
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias)
        self.attn = CausalSelfAttention(n_embd, n_head, bias)
        self.ln_2 = LayerNorm(n_embd, bias)
        self.mlp = MLP(n_embd, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab, block, n_layer, n_head, n_embd, bias):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, n_embd),
            wpe=nn.Embedding(block, n_embd),
            drop=nn.Dropout(0.0),
            h=nn.ModuleList([Block(n_embd, n_head, bias) for _ in range(n_layer)]),
            ln_f=LayerNorm(n_embd, bias),
        ))
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def make(variant, bias, seed):
    torch.manual_seed(seed)
    V, BLOCK, L, H, C = 11, 16, 2, 2, 32
    model = GPT(V, BLOCK, L, H, C, bias)
    with torch.no_grad():  # random weights of a size that makes every part of the net matter
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1]))
    B, T = 3, 12
    idx = torch.randint(V, (B, T))
    targets = torch.randint(V, (B, T))
    logits, loss = model(idx, targets)
    loss.backward()

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if bias:
        del state["transformer.wte.weight"]  # the tied weight saved once, under lm_head.weight
    meta = {"n_layer": str(L), "n_embd": str(C), "block_size": str(BLOCK), "vocab_size": str(V)}
    if not bias:
        meta["n_head"] = str(H)
    save_file(state, os.path.join(HERE, f"char_{variant}_model.safetensors"), metadata=meta)

    grads = {"grad." + n: p.grad.detach().clone() for n, p in model.named_parameters()}
    expected = {"idx": idx, "targets": targets, "logits": logits.detach(), "loss": loss.detach().reshape(1), **grads}
    save_file(expected, os.path.join(HERE, f"char_{variant}_expected.safetensors"))
    print(variant, "loss", loss.item(), "params", sum(p.numel() for p in model.parameters()))


make("bias", True, 1)
make("nobias", False, 2)
