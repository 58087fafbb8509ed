"""PyTorch side of `forge bench core`: matmul at 256/512/1024 and the DCGAN conv layers (batch 64),
forward and forward+backward, timed the same way (median of reps, each rep >= min-ms).

  torch-venv/bin/python bench/ref_core.py --threads 2
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def timeit(fn, reps, min_ms):
    fn()
    per_call = []
    for _ in range(reps):
        calls, t0 = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            el = time.perf_counter() - t0
            if el * 1000 >= min_ms:
                break
        per_call.append(el / calls)
    return statistics.median(per_call)


LAYERS = [  # name, transposed, cin, cout, h, k, s, p
    ("D conv 3->64 @64", False, 3, 64, 64, 4, 2, 1),
    ("D conv 64->128 @32", False, 64, 128, 32, 4, 2, 1),
    ("D conv 128->256 @16", False, 128, 256, 16, 4, 2, 1),
    ("D conv 256->512 @8", False, 256, 512, 8, 4, 2, 1),
    ("G convT 512->256 @4", True, 512, 256, 4, 4, 2, 1),
    ("G convT 256->128 @8", True, 256, 128, 8, 4, 2, 1),
    ("G convT 128->64 @16", True, 128, 64, 16, 4, 2, 1),
    ("G convT 64->3 @32", True, 64, 3, 32, 4, 2, 1),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--min-ms", type=float, default=200)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"# torch {torch.__version__} threads {a.threads}")
    print(f"{'matmul (square)':<24} {'torch GF/s':>12}")
    for n in (256, 512, 1024):
        x, y = torch.randn(n, n), torch.randn(n, n)
        t = timeit(lambda: x @ y, a.reps, a.min_ms)
        print(f"{f'{n}x{n}x{n}':<24} {2 * n ** 3 / t / 1e9:>12.1f}")
    print(f"{'conv (batch 64)':<24} {'fwd GF/s':>12} {'fwd+bwd GF/s':>14}")
    B = 64
    for name, tr, cin, cout, h, k, s, p in LAYERS:
        x = torch.randn(B, cin, h, h)
        w = torch.randn(*((cin, cout, k, k) if tr else (cout, cin, k, k))) * 0.02
        f = (lambda: F.conv_transpose2d(x, w, stride=s, padding=p)) if tr else (lambda: F.conv2d(x, w, stride=s, padding=p))
        with torch.no_grad():
            out = f()
            tf = timeit(f, a.reps, a.min_ms)
        flops = 2.0 * B * cin * h * h * cout * k * k if tr else 2.0 * out.numel() * cin * k * k
        x.requires_grad_(True)
        w.requires_grad_(True)
        gy = torch.randn_like(out)

        def fb():
            x.grad = None
            w.grad = None
            f().backward(gy)

        tb = timeit(fb, a.reps, a.min_ms)
        print(f"{name:<24} {flops / tf / 1e9:>12.1f} {3 * flops / tb / 1e9:>14.1f}")


if __name__ == "__main__":
    main()
