"""PyTorch reference values for ReferenceTests: (a) a small conv net, (b) one nanoGPT transformer block.

Writes reference_fixtures.bin (raw little-endian float32, back to back) and reference_fixtures.json
({"tensors": {name: {"shape": [...], "offset": floats}}}). Every forward output and every gradient
of L = sum(output * r) for a fixed random r.

Run:  /work/torch-venv/bin/python Tests/TensorCoreTests/Fixtures/make_reference_fixtures.py
"""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(2024)
here = os.path.dirname(os.path.abspath(__file__))
tensors, blobs = {}, []
offset = 0


def put(name, t):
    global offset
    a = t.detach().to(torch.float32).contiguous().numpy().astype("<f4")
    tensors[name] = {"shape": list(a.shape), "offset": offset}
    blobs.append(a.tobytes())
    offset += a.size


# ---------------------------------------------------------------- (a) conv net
# conv(3->4, k3 s1 p1, bias) -> BatchNorm2d(train) -> LeakyReLU(0.2) -> convT(4->2, k4 s2 p1, bias) -> tanh
conv = nn.Conv2d(3, 4, 3, 1, 1)
bn = nn.BatchNorm2d(4)
with torch.no_grad():
    bn.weight.uniform_(0.5, 1.5)
    bn.bias.uniform_(-0.5, 0.5)
convt = nn.ConvTranspose2d(4, 2, 4, 2, 1)
x = torch.randn(2, 3, 5, 5, requires_grad=True)
for name, p in [("conv.weight", conv.weight), ("conv.bias", conv.bias), ("bn.weight", bn.weight), ("bn.bias", bn.bias),
                ("convt.weight", convt.weight), ("convt.bias", convt.bias), ("x", x)]:
    put("convnet." + name, p)
y = torch.tanh(convt(F.leaky_relu(bn(conv(x)), 0.2)))
r = torch.randn_like(y)
(y * r).sum().backward()
put("convnet.r", r)
put("convnet.y", y)
put("convnet.running_mean", bn.running_mean)
put("convnet.running_var", bn.running_var)
for name, p in [("conv.weight", conv.weight), ("conv.bias", conv.bias), ("bn.weight", bn.weight), ("bn.bias", bn.bias),
                ("convt.weight", convt.weight), ("convt.bias", convt.bias), ("x", x)]:
    put("convnet.grad." + name, p.grad)

# ---------------------------------------------------------------- (b) transformer block (nanoGPT, bias=True)
B, T, C, H = 2, 6, 8, 2
ln_1, ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
c_attn, c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
c_fc, mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
with torch.no_grad():
    for ln in (ln_1, ln_2):
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.3, 0.3)
params = [("ln_1.weight", ln_1.weight), ("ln_1.bias", ln_1.bias), ("attn.c_attn.weight", c_attn.weight),
          ("attn.c_attn.bias", c_attn.bias), ("attn.c_proj.weight", c_proj.weight), ("attn.c_proj.bias", c_proj.bias),
          ("ln_2.weight", ln_2.weight), ("ln_2.bias", ln_2.bias), ("mlp.c_fc.weight", c_fc.weight),
          ("mlp.c_fc.bias", c_fc.bias), ("mlp.c_proj.weight", mlp_proj.weight), ("mlp.c_proj.bias", mlp_proj.bias)]
x = torch.randn(B, T, C, requires_grad=True)
for name, p in params + [("x", x)]:
    put("block." + name, p)


def attn(h):
    q, k, v = c_attn(h).split(C, dim=2)
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


h = x + attn(ln_1(x))
y = h + mlp_proj(F.gelu(c_fc(ln_2(h))))
r = torch.randn_like(y)
(y * r).sum().backward()
put("block.r", r)
put("block.y", y)
for name, p in params + [("x", x)]:
    put("block.grad." + name, p.grad)

with open(os.path.join(here, "reference_fixtures.bin"), "wb") as f:
    for b in blobs:
        f.write(b)
with open(os.path.join(here, "reference_fixtures.json"), "w") as f:
    json.dump({"tensors": tensors, "torch": torch.__version__}, f, indent=1)
print(f"wrote {offset} floats, torch {torch.__version__}")
