"""`make bench`: Forge against PyTorch, workload by workload, alternating (A B A B …) in one run.

For each workload it runs `forge bench …` and `python bench/torch_ref.py …` in turn, `--rounds` times
each, reads the `RESULT <workload> <rate> <unit>` line each prints and the child's max RSS, and
prints one table of medians (also written to bench/RESULTS.md with the machine and the date).
Without PyTorch it says how to get it and still prints Forge's column. Stdlib only.

  python3 bench/run.py [--forge .build/release/forge] [--python torch-venv/bin/python] [--rounds 3] [--only vae,dcgan32]
                       [--keep-blas-env]

OpenBLAS picks its kernels when it loads. Some machines set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the
environment (older OpenBLAS builds crash or compute wrong results on some CPUs); on a CPU that Debian's
OpenBLAS 0.3.21 knows, that only forces slower kernels on Forge (PyTorch uses its own MKL/oneDNN and never
reads them). So both children run with the two variables removed, and the table header names the kernel
set OpenBLAS then chose; --keep-blas-env runs them with the environment as it is.
"""
import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)



def sampling(batch, block, approximate=False):
    """A sampling row: nanoGPT's generate (exact, re-running the cropped context per token) on both
    sides, 500 new tokens per sequence, the baby preset's 4-layer 128-wide model with a `block` context;
    one round per child (run.py alternates the children). `approximate`: Forge's --reuse-context
    half-window rebuild against PyTorch's exact generate (not a like-for-like ratio; labelled so)."""
    name = f"char-sample-b{batch}-block{block}" + ("-approx-reuse-context" if approximate else "")
    forge = ["bench", "char", "--sample", "--block", str(block), "--sample-batch", str(batch), "--rounds", "1"]
    torch = ["char-sample", "--block", str(block), "--batch", str(batch), "--rounds", "1"]
    return name, forge + (["--reuse-context"] if approximate else []), torch


# workload -> (forge arguments, torch_ref.py workload and its arguments, or None for a Forge-only row)
WORKLOADS = [
    ("matmul1024", ["bench", "core", "--only", "matmul1024"], "matmul1024"),
    ("dcgan32", ["bench", "gan", "--size", "32", "--batch", "64"], "dcgan32"),
    ("dcgan64", ["bench", "gan", "--size", "64", "--batch", "64"], "dcgan64"),
    ("cgan32-cbn", ["bench", "gan", "--size", "32", "--batch", "64", "--recipe", "dcgan-cbn"], "cgan32-cbn"),
    ("cgan32-cbn-sn", ["bench", "gan", "--size", "32", "--batch", "64", "--recipe", "cbn-sn"], "cgan32-cbn-sn"),
    ("cgan32-stable", ["bench", "gan", "--size", "32", "--batch", "64", "--recipe", "stable"], "cgan32-stable"),
    ("vae", ["bench", "vae", "--batch", "128"], "vae"),
    ("char-baby", ["bench", "char", "--preset", "baby"], "char-baby"),
    ("char-shakespeare", ["bench", "char", "--preset", "shakespeare"], "char-shakespeare"),
    sampling(1, 64), sampling(16, 64), sampling(1, 256), sampling(16, 256),
    sampling(1, 64, approximate=True),
    # the shipped code model (4 layers, 128 wide, block 256), exact, Forge only
    ("char-sample-python-char-b1", ["bench", "char", "--sample", "--checkpoint", "checkpoints/python-char.safetensors", "--rounds", "1"], None),
    ("char-sample-python-char-b16", ["bench", "char", "--sample", "--checkpoint", "checkpoints/python-char.safetensors",
                                     "--sample-batch", "16", "--rounds", "1"], None),
]

RESULT = re.compile(r"^RESULT\s+(\S+)\s+([0-9.]+)\s+(\S+)", re.M)
# `forge bench …` prints the workload's floating-point operations per item once, counted from the layer
# shapes (DCGAN.trainingFLOPsPerImage, nanoGPT's estimate_mfu count for the char models, …); the same
# count is applied to both columns, so their GFLOP/s and % of peak compare the same work.
FLOPS = re.compile(r"^FLOPS\s+(\S+)\s+([0-9.eE+]+)\s+per\s+(\S+)", re.M)


def run_with_rss(cmd, env=None):
    """Like run(), with the child's peak resident memory from wait4."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    m = RESULT.findall(out)
    if p.returncode != 0 or not m:
        print(f"  {' '.join(cmd)} failed (exit {p.returncode}): {err.strip()[-300:]}", file=sys.stderr)
        return None
    flops = FLOPS.findall(out)
    return float(m[-1][1]), m[-1][2], usage.ru_maxrss / 1024.0, (float(flops[-1][1]) if flops else None)


def gflops(rate, unit, flops_per_item):
    """Achieved GFLOP/s of a row: the rate itself for a GFLOP/s row, else items/s × FLOPs per item."""
    if rate is None:
        return None
    if unit == "GFLOP/s":
        return rate
    return rate * flops_per_item / 1e9 if flops_per_item else None


def torch_available(python):
    try:
        return subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0
    except OSError:
        return False


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return cpu, os.cpu_count()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--forge", default=os.path.join(ROOT, ".build/release/forge"))
    ap.add_argument("--python", default=os.environ.get("TORCH_PYTHON", os.path.join(ROOT, "torch-venv/bin/python")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--keep-blas-env", action="store_true", help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as set")
    a = ap.parse_args()
    only = set(filter(None, a.only.split(",")))
    have_torch = torch_available(a.python)
    if not have_torch:
        print(f"PyTorch not found at {a.python}. To compare, install it once:\n"
              f"  python3 -m venv torch-venv && torch-venv/bin/pip install torch numpy\n"
              f"(or point --python / TORCH_PYTHON at a python that has torch). Printing Forge's column only.\n")
    env = dict(os.environ, FORGE_THREADS=str(a.threads))
    if not a.keep_blas_env:
        for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # removed together, never one alone
            env.pop(var, None)
    core = subprocess.run([a.forge, "bench", "core", "--only", "info"], capture_output=True, text=True, env=env, cwd=ROOT).stdout.strip()
    # The machine's limit: the FMA peak at these threads, measured by the same loop as ../shared/bench/peak.c.
    peak_out = subprocess.run([a.forge, "bench", "core", "--only", "peak"], capture_output=True, text=True, env=env, cwd=ROOT).stdout
    peak = next((float(v) for n, v, _ in RESULT.findall(peak_out) if n == "fma-peak"), None)
    print(f"FMA peak, {a.threads} threads: " + (f"{peak:.1f} GFLOP/s" if peak else "not measured"))

    def measure(names, with_torch, forge_env):
        rows = []
        for name, forge_args, torch_name in WORKLOADS:
            if names is not None and name not in names:
                continue
            print(f"{name}: ", end="", flush=True)
            fr, tr = [], []
            funit = tunit = ""
            frss, trss = [], []
            flops = None
            for _ in range(a.rounds):  # A B A B …
                r = run_with_rss([a.forge] + forge_args, forge_env)  # FORGE_THREADS in env
                if r:
                    fr.append(r[0]); funit = r[1]; frss.append(r[2]); flops = r[3] or flops
                if with_torch and have_torch and torch_name:
                    torch_args = [torch_name] if isinstance(torch_name, str) else torch_name
                    r = run_with_rss([a.python, os.path.join(HERE, "torch_ref.py")] + torch_args + ["--threads", str(a.threads)], env)
                    if r:
                        tr.append(r[0]); tunit = r[1]; trss.append(r[2])
                print(".", end="", flush=True)
            print()
            f = statistics.median(fr) if fr else None
            t = statistics.median(tr) if tr else None
            rows.append((name, f, t, funit or tunit, max(frss) if frss else None, max(trss) if trss else None, flops))
        return rows

    def fmt(v, spec):
        return "—" if v is None else format(v, spec)

    def rate_and_share(rate, unit, flops):
        g = gflops(rate, unit, flops)
        if g is None:
            return "—"
        return f"{g:,.1f} ({100 * g / peak:.0f} %)" if peak else f"{g:,.1f}"

    def render(rows, torch_rows=None):
        header = ("| workload | Forge | PyTorch | unit | ratio | FLOPs per item | Forge GFLOP/s (% of peak) | PyTorch GFLOP/s (% of peak) "
                  "| Forge max RSS (MiB) | PyTorch max RSS (MiB) |\n|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        lines = [header]
        for name, f, t, unit, fm, tm, flops in rows:
            if torch_rows is not None:  # the PyTorch column of the first table (PyTorch reads no OPENBLAS_* variable)
                _, _, t, _, _, tm, _ = torch_rows.get(name, (None,) * 7)
            ratio = f / t if (f and t) else None
            flops_text = "—" if unit == "GFLOP/s" or not flops else f"{flops / 1e6:,.1f} M"
            lines.append(f"| {name} | {fmt(f, ',.1f')} | {fmt(t, ',.1f')} | {unit} | {fmt(ratio, '.2f')}× | {flops_text} "
                         f"| {rate_and_share(f, unit, flops)} | {rate_and_share(t, unit, flops)} | {fmt(fm, '.0f')} | {fmt(tm, '.0f')} |")
        return "\n".join(lines)

    rows = measure(only or None, True, env)
    table = render(rows)
    print(table)
    # The second table: Forge again with the environment's OPENBLAS_CORETYPE kept (machines that force
    # Haswell run OpenBLAS's AVX2 kernels), beside the first table's PyTorch column.
    forced = os.environ.get("OPENBLAS_CORETYPE")
    if forced and not a.keep_blas_env:
        print(f"\nagain with the environment's OPENBLAS_CORETYPE={forced} kept (Forge only; PyTorch reads neither variable):")
        kept = dict(os.environ, FORGE_THREADS=str(a.threads))
        forced_rows = measure({r[0] for r in rows}, False, kept)
        second = (f"\n\nWith the environment's `OPENBLAS_CORETYPE={forced}` (and `OPENBLAS_L2_SIZE` as set) kept for Forge; "
                  f"the PyTorch column is the table's above.\n\n" + render(forced_rows, {r[0]: r for r in rows}))
        print(second)
    else:
        second = ("\n\nThe environment sets no `OPENBLAS_CORETYPE`, so there is no second table; run with e.g. "
                  "`OPENBLAS_CORETYPE=Haswell python3 bench/run.py` to measure OpenBLAS's AVX2 kernels too."
                  if not forced else "")
    cpu, cores = machine()
    tv = subprocess.run([a.python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True).stdout.strip() if have_torch else "not installed"
    md = (f"# Benchmark results\n\n{datetime.date.today().isoformat()} · {cpu} · {cores} cores · threads {a.threads} · "
          f"{core} · torch {tv} · {platform.platform()}\n\nMedians of {a.rounds} alternating rounds (Forge, PyTorch, Forge, …); "
          f"ratio = Forge / PyTorch (higher is better for Forge). GFLOP/s = items/s × the FLOPs per item that Forge counts "
          f"from the layer shapes (the same count for both columns); % of the FMA peak `forge bench core` measured at "
          f"{a.threads} threads: " + (f"{peak:.1f} GFLOP/s" if peak else "not measured") + f".\n\n{table}{second}\n")
    with open(os.path.join(HERE, "RESULTS.md"), "w") as fh:
        fh.write(md)
    print(f"\nwrote {os.path.join(HERE, 'RESULTS.md')}")


if __name__ == "__main__":
    main()
