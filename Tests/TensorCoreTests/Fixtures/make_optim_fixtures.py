"""Reference values from PyTorch for OptimizerTests and LossTests.

Writes optim_fixtures.bin (raw little-endian float32, tensors back to back) and optim_fixtures.json
({"tensors": {name: {"shape": [...], "offset": floats}}, "scalars": {name: value}, ...}).

Run from anywhere:  /work/torch-venv/bin/python Tests/TensorCoreTests/Fixtures/make_optim_fixtures.py
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(1234)
here = os.path.dirname(os.path.abspath(__file__))
tensors, blobs, scalars = {}, [], {}
offset = 0


def put(name, t):
    global offset
    a = t.detach().to(torch.float32).contiguous().numpy().astype("<f4")
    tensors[name] = {"shape": list(a.shape), "offset": offset}
    blobs.append(a.tobytes())
    offset += a.size


# ---------------------------------------------------------------- optimizers
# Two parameters: a 2-D weight (decays in nanoGPT's grouping) and a 1-D bias (does not).
w0 = torch.randn(6, 5)
b0 = torch.randn(5)
grads = [(torch.randn(6, 5), torch.randn(5)) for _ in range(5)]
put("init.w", w0)
put("init.b", b0)
for i, (gw, gb) in enumerate(grads):
    put(f"grad{i}.w", gw)
    put(f"grad{i}.b", gb)

STEPS = 5
ADAM_SKIP_B = 2            # Adam: the bias gets no gradient at this step (its state must not advance)
ADAMW_LRS = [0.01, 0.008, 0.006, 0.004, 0.002]   # AdamW: learning rate changed between steps


def run(name, make):
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = make(w, b)
    for i in range(STEPS):
        if name == "adamw":
            for g in opt.param_groups:
                g["lr"] = ADAMW_LRS[i]
        w.grad = grads[i][0].clone()
        b.grad = None if (name == "adam" and i == ADAM_SKIP_B) else grads[i][1].clone()
        opt.step()
        put(f"{name}.step{i + 1}.w", w)
        put(f"{name}.step{i + 1}.b", b)
    # final optimizer state under torch's state_dict numbering (0 = w, 1 = b)
    for idx, st in opt.state_dict()["state"].items():
        for key, val in st.items():
            put(f"{name}.state.{idx}.{key}", torch.as_tensor(val, dtype=torch.float32).reshape(val.shape if torch.is_tensor(val) else ()))


run("sgd_nesterov", lambda w, b: torch.optim.SGD([w, b], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))
run("sgd_dampening", lambda w, b: torch.optim.SGD([w, b], lr=0.05, momentum=0.8, dampening=0.3))
run("sgd_plain", lambda w, b: torch.optim.SGD([w, b], lr=0.1, weight_decay=0.05))
run("adam", lambda w, b: torch.optim.Adam([w, b], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1))
run("adamw", lambda w, b: torch.optim.AdamW(
    [{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
    lr=ADAMW_LRS[0], betas=(0.9, 0.95), eps=1e-8))

# ---------------------------------------------------------------- clip_grad_norm_
for case, max_norm in (("clip", 1.0), ("noclip", 100.0)):
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    w.grad = grads[0][0].clone() * 3
    b.grad = grads[0][1].clone() * 3
    norm = torch.nn.utils.clip_grad_norm_([w, b], max_norm)
    scalars[f"{case}.max_norm"] = max_norm
    scalars[f"{case}.norm"] = float(norm)
    put(f"{case}.w", w.grad)
    put(f"{case}.b", b.grad)


# ---------------------------------------------------------------- nanoGPT cosine schedule
def get_lr(it, learning_rate=6e-4, min_lr=6e-5, warmup_iters=10, lr_decay_iters=100):
    # nanoGPT train.py, verbatim
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


lr_cosine = [[it, get_lr(it)] for it in (0, 1, 5, 9, 10, 11, 30, 55, 99, 100, 101, 1000)]

# StepLR(step_size=3, gamma=0.5) from lr 0.1
opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
lr_step = []
for it in range(10):
    lr_step.append([it, opt.param_groups[0]["lr"]])
    opt.step()
    sched.step()

# ---------------------------------------------------------------- losses
x = torch.randn(4, 5) * 3
x[0, 0], x[0, 1], x[1, 0], x[1, 1] = 30.0, -30.0, 120.0, -120.0    # far tails: must stay finite and exact
t = torch.rand(4, 5)
t[1, 2], t[1, 3] = 0.0, 1.0
put("bce_logits.x", x)
put("bce_logits.t", t)
for red in ("mean", "sum", "none"):
    xx = x.clone().requires_grad_(True)
    tt = t.clone().requires_grad_(True)
    loss = F.binary_cross_entropy_with_logits(xx, tt, reduction=red)
    put(f"bce_logits.{red}.value", loss)
    loss.backward(torch.linspace(-1, 1, loss.numel()).reshape(loss.shape) if red == "none" else None)
    put(f"bce_logits.{red}.dx", xx.grad)
    put(f"bce_logits.{red}.dt", tt.grad)

p = torch.sigmoid(torch.randn(4, 5))
p[0, 0], p[0, 1] = 0.0, 1.0        # log clamped at -100
tp = torch.rand(4, 5)
tp[0, 0], tp[0, 1] = 1.0, 0.0
put("bce.p", p)
put("bce.t", tp)
for red in ("mean", "sum"):
    pp = p.clone().requires_grad_(True)
    tt = tp.clone().requires_grad_(True)
    loss = F.binary_cross_entropy(pp, tt, reduction=red)
    put(f"bce.{red}.value", loss)
    loss.backward()
    put(f"bce.{red}.dp", pp.grad)
    put(f"bce.{red}.dt", tt.grad)

a = torch.randn(3, 4)
b = torch.randn(3, 4)
put("mse.a", a)
put("mse.b", b)
aa = a.clone().requires_grad_(True)
bb = b.clone().requires_grad_(True)
loss = F.mse_loss(aa, bb)
put("mse.mean.value", loss)
loss.backward()
put("mse.mean.da", aa.grad)
put("mse.mean.db", bb.grad)

mu = torch.randn(4, 3)
logvar = torch.randn(4, 3) * 0.5
put("kl.mu", mu)
put("kl.logvar", logvar)
m = mu.clone().requires_grad_(True)
lv = logvar.clone().requires_grad_(True)
kl = -0.5 * torch.sum(1 + lv - m.pow(2) - lv.exp())
put("kl.sum.value", kl)
kl.backward()
put("kl.sum.dmu", m.grad)
put("kl.sum.dlogvar", lv.grad)

with open(os.path.join(here, "optim_fixtures.bin"), "wb") as f:
    f.write(b"".join(blobs))
with open(os.path.join(here, "optim_fixtures.json"), "w") as f:
    json.dump({"tensors": tensors, "scalars": scalars, "lr_cosine": lr_cosine, "lr_step": lr_step,
               "adam_skip_b_step": ADAM_SKIP_B, "adamw_lrs": ADAMW_LRS, "torch": torch.__version__}, f, indent=1)
print(f"{offset} floats, {offset * 4} bytes")
