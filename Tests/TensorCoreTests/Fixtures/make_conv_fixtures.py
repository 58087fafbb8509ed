#!/work/torch-venv/bin/python
"""PyTorch reference values for ConvTests / PoolTests / BatchNormTests.

Writes Fixtures/conv/<case>.json (shapes + hyper-parameters) and <case>.<tensor>.bin (raw little-endian
float32, row-major). Inputs are float32; the reference is computed in float64 from those exact values, so
the fixture holds the true answer rounded once. Each case's scalar loss is sum(y * r) for a fixed random r,
so the stored gradients are backward(r).

Run:  /work/torch-venv/bin/python Tests/TensorCoreTests/Fixtures/make_conv_fixtures.py
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv")
rng = np.random.default_rng(1234)


def rand(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def save(case, params, tensors):
    os.makedirs(OUT, exist_ok=True)
    meta = {"params": params, "tensors": {}}
    for name, t in tensors.items():
        a = t.detach().numpy() if isinstance(t, torch.Tensor) else t
        a = np.ascontiguousarray(a, dtype="<f4")
        a.tofile(os.path.join(OUT, f"{case}.{name}.bin"))
        meta["tensors"][name] = list(a.shape)
    with open(os.path.join(OUT, f"{case}.json"), "w") as f:
        json.dump(meta, f, indent=1)


def leaf(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


# conv2d, stride 2, padding 1, non-square kernel, with bias
x, w, b = rand(2, 3, 7, 6), rand(4, 3, 3, 2, scale=0.5), rand(4)
tx, tw, tb = leaf(x), leaf(w), leaf(b)
y = F.conv2d(tx, tw, tb, stride=2, padding=1)
r = rand(*y.shape)
(y * torch.tensor(r, dtype=torch.float64)).sum().backward()
save("conv2d", {"stride": [2, 2], "padding": [1, 1]},
     {"x": x, "weight": w, "bias": b, "y": y, "r": r, "dx": tx.grad, "dweight": tw.grad, "dbias": tb.grad})

# conv_transpose2d, stride 2, padding 1, output_padding (1, 0), weight (Cin, Cout, KH, KW)
x, w, b = rand(2, 4, 3, 4), rand(4, 3, 4, 3, scale=0.5), rand(3)
tx, tw, tb = leaf(x), leaf(w), leaf(b)
y = F.conv_transpose2d(tx, tw, tb, stride=2, padding=1, output_padding=(1, 0))
r = rand(*y.shape)
(y * torch.tensor(r, dtype=torch.float64)).sum().backward()
save("conv_transpose2d", {"stride": [2, 2], "padding": [1, 1], "output_padding": [1, 0]},
     {"x": x, "weight": w, "bias": b, "y": y, "r": r, "dx": tx.grad, "dweight": tw.grad, "dbias": tb.grad})

# batch norm, training mode: batch statistics, running stats updated with the unbiased variance
x, w, b = rand(4, 3, 5, 5, scale=2.0) + 1.5, rand(3), rand(3)
rm, rv = rand(3), (np.abs(rand(3)) + 0.5).astype(np.float32)
tx, tw, tb = leaf(x), leaf(w), leaf(b)
trm, trv = torch.tensor(rm, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64)
y = F.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.1, eps=1e-5)
r = rand(*y.shape)
(y * torch.tensor(r, dtype=torch.float64)).sum().backward()
save("batch_norm", {"momentum": 0.1, "eps": 1e-5},
     {"x": x, "weight": w, "bias": b, "running_mean": rm, "running_var": rv, "y": y, "r": r,
      "dx": tx.grad, "dweight": tw.grad, "dbias": tb.grad, "running_mean_after": trm, "running_var_after": trv})

# pooling, kernel 3, stride 2, padding 1
x = rand(2, 3, 7, 7)
for case, fn in (("max_pool2d", F.max_pool2d), ("avg_pool2d", F.avg_pool2d)):
    tx = leaf(x)
    y = fn(tx, 3, stride=2, padding=1)
    r = rand(*y.shape)
    (y * torch.tensor(r, dtype=torch.float64)).sum().backward()
    save(case, {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1]}, {"x": x, "y": y, "r": r, "dx": tx.grad})

print("wrote", OUT, sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT)), "bytes")
