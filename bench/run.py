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
    return float(m[-1][1]), m[-1][2], usage.ru_maxrss / 1024.0


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
    rows = []
    for name, forge_args, torch_name in WORKLOADS:
        if only and name not in only:
            continue
        print(f"{name}: ", end="", flush=True)
        fr, tr = [], []
        funit = tunit = ""
        frss, trss = [], []
        for _ in range(a.rounds):  # A B A B …
            r = run_with_rss([a.forge] + forge_args, env)  # FORGE_THREADS in env
            if r:
                fr.append(r[0]); funit = r[1]; frss.append(r[2])
            if have_torch and torch_name:
                torch_args = [torch_name] if isinstance(torch_name, str) else torch_name
                r = run_with_rss([a.python, os.path.join(HERE, "torch_ref.py")] + torch_args + ["--threads", str(a.threads)], env)
                if r:
                    tr.append(r[0]); tunit = r[1]; trss.append(r[2])
            print(".", end="", flush=True)
        print()
        f = statistics.median(fr) if fr else None
        t = statistics.median(tr) if tr else None
        rows.append((name, f, t, funit or tunit, max(frss) if frss else None, max(trss) if trss else None))

    def fmt(v, spec):
        return "—" if v is None else format(v, spec)

    header = f"| workload | Forge | PyTorch | unit | ratio | Forge max RSS (MiB) | PyTorch max RSS (MiB) |\n|---|---:|---:|---|---:|---:|---:|"
    lines = [header]
    for name, f, t, unit, fm, tm in rows:
        ratio = f / t if (f and t) else None
        lines.append(f"| {name} | {fmt(f, ',.1f')} | {fmt(t, ',.1f')} | {unit} | {fmt(ratio, '.2f')}× | {fmt(fm, '.0f')} | {fmt(tm, '.0f')} |")
    table = "\n".join(lines)
    print(table)
    cpu, cores = machine()
    tv = subprocess.run([a.python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True).stdout.strip() if have_torch else "not installed"
    md = (f"# Benchmark results\n\n{datetime.date.today().isoformat()} · {cpu} · {cores} cores · threads {a.threads} · "
          f"{core} · torch {tv} · {platform.platform()}\n\nMedians of {a.rounds} alternating rounds (Forge, PyTorch, Forge, …); "
          f"ratio = Forge / PyTorch (higher is better for Forge).\n\n{table}\n")
    with open(os.path.join(HERE, "RESULTS.md"), "w") as fh:
        fh.write(md)
    print(f"\nwrote {os.path.join(HERE, 'RESULTS.md')}")


if __name__ == "__main__":
    main()
