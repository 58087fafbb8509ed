"""PyTorch reference values for the stable conditional GAN recipe (issue 15).

Writes
* Tests/TensorCoreTests/Fixtures/gan_recipe_fixtures.json: conditional BatchNorm (BatchNorm2d(affine=False)
  followed by per-class weight/bias rows, training mode: output, running statistics, gradients of
  L = sum(y * r)) and spectral_norm (torch.nn.utils.parametrizations.spectral_norm on a Conv2d, one
  training-mode forward from given u, v: the normalised weight, the updated u, v, sigma and dL/dW);
* Tests/TensorCoreTests/Fixtures/hinge_fixtures.json (read by TrainingTests through its path): the hinge losses of D and G and their gradients.

Run:  /work/torch-venv/bin/python Tests/TensorCoreTests/Fixtures/make_gan_recipe_fixtures.py
"""
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(15)
here = os.path.dirname(os.path.abspath(__file__))


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


# ---------------------------------------------------------------- conditional BatchNorm
B, C, H, W, K = 4, 3, 2, 3, 3
x = torch.randn(B, C, H, W, requires_grad=True)
labels = torch.tensor([0, 2, 1, 2])
gamma = (1 + 0.5 * torch.randn(K, C)).requires_grad_()
beta = (0.5 * torch.randn(K, C)).requires_grad_()
bn = nn.BatchNorm2d(C, affine=False)
y = bn(x) * gamma[labels].view(B, C, 1, 1) + beta[labels].view(B, C, 1, 1)
r = torch.randn_like(y)
(y * r).sum().backward()
cbn = {
    "x_shape": list(x.shape), "x": flat(x), "labels": labels.tolist(), "weight": flat(gamma), "bias": flat(beta),
    "r": flat(r), "y": flat(y), "running_mean": flat(bn.running_mean), "running_var": flat(bn.running_var),
    "grad_x": flat(x.grad), "grad_weight": flat(gamma.grad), "grad_bias": flat(beta.grad),
}

# ---------------------------------------------------------------- spectral norm on a Conv2d
conv = nn.Conv2d(2, 5, 3, bias=False)
conv = torch.nn.utils.parametrizations.spectral_norm(conv)
p = conv.parametrizations.weight
original = p.original.detach().clone()
u0 = F.normalize(torch.randn(5), dim=0)
v0 = F.normalize(torch.randn(18), dim=0)
with torch.no_grad():
    p[0]._u.copy_(u0)
    p[0]._v.copy_(v0)
conv.train()
w_sn = conv.weight  # one power iteration, then W / sigma
rw = torch.randn_like(w_sn)
(w_sn * rw).sum().backward()
u1, v1 = p[0]._u.detach().clone(), p[0]._v.detach().clone()
sigma = torch.dot(u1, original.reshape(5, -1) @ v1)
sn = {
    "weight_shape": list(original.shape), "weight": flat(original), "u0": flat(u0), "v0": flat(v0),
    "u1": flat(u1), "v1": flat(v1), "sigma": float(sigma), "normalized": flat(w_sn), "r": flat(rw),
    "grad_weight": flat(p.original.grad),
}
with open(os.path.join(here, "gan_recipe_fixtures.json"), "w") as f:
    json.dump({"conditional_batch_norm": cbn, "spectral_norm": sn}, f, indent=1)

# ---------------------------------------------------------------- hinge loss
real = (torch.randn(7) * 1.5).requires_grad_()
fake = (torch.randn(7) * 1.5).requires_grad_()
loss_d = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
loss_d.backward()
grad_real, grad_fake_d = real.grad.clone(), fake.grad.clone()
fake.grad = None
loss_g = -fake.mean()
loss_g.backward()
with open(os.path.join(here, "hinge_fixtures.json"), "w") as f:
    json.dump({"real": flat(real), "fake": flat(fake), "loss_d": loss_d.item(), "loss_g": loss_g.item(),
               "grad_real": flat(grad_real), "grad_fake_d": flat(grad_fake_d), "grad_fake_g": flat(fake.grad)}, f, indent=1)
print("wrote gan_recipe_fixtures.json and hinge_fixtures.json")
