"""How far two Forge checkpoints of the same model are apart: the data-parallel equivalence measure.

  python3 scripts/compare-checkpoints.py ONE.safetensors TWO.safetensors     # numpy needed

For the weights (every F32 tensor but `optimizer.*`) it prints
  - the norm-wise distance ||a − b|| / ||a|| over all of them, and the tensor where it is largest;
  - the element-wise max |a − b| / max(1, |a|) (the measure of the tests in DataParallelCLITests),
and the element-wise figure again with Adam's moments included. Both files must hold the same names.
"""
import json
import struct
import sys

import numpy as np


def load(path):
    """The F32 tensors of a safetensors file as float64 arrays, by name."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, entry in header.items():
        if name == "__metadata__" or entry["dtype"] != "F32":
            continue
        start, end = entry["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + start:8 + n + end], dtype="<f4").astype(np.float64)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = load(sys.argv[1]), load(sys.argv[2])
    if sorted(a) != sorted(b):
        sys.exit("the checkpoints hold different tensors")
    weights = [k for k in a if not k.startswith("optimizer.") and a[k].size]
    squared = sum(float(np.sum((a[k] - b[k]) ** 2)) for k in weights)
    norm = sum(float(np.sum(a[k] ** 2)) for k in weights)
    worst = max((float(np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(a[k]), 1e-30)), k) for k in weights)

    def elementwise(names):
        return max((float(np.max(np.abs(a[k] - b[k]) / np.maximum(1, np.abs(a[k])))), k) for k in names if a[k].size)

    print(f"weights: ||a - b|| / ||a|| = {np.sqrt(squared / norm):.1e} (largest in {worst[1]}: {worst[0]:.1e}); "
          f"max |a - b| / max(1, |a|) = {elementwise(weights)[0]:.1e} ({elementwise(weights)[1]}); "
          f"with Adam's moments: {elementwise(list(a))[0]:.1e}")


if __name__ == "__main__":
    main()
