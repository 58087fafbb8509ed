#!/usr/bin/env python3
"""Cut a Forge checkpoint down to what sampling reads, for shipping under checkpoints/.

Keeps the metadata (kind, config, classes or vocabulary, training state) and the tensors whose names
start with the given prefix. The default prefix depends on the checkpoint's kind:
  - gan: the EMA generator (`generator_ema.`), which `forge sample gan` and `forge generate images` use
    when the config has an EMA, else the generator (`generator.`); the discriminator is dropped;
  - any other kind (char, vae, ...): every model tensor, that is all but `optimizer.` and `rng.`.
The optimizers' moments and the random generators are always dropped, so the file cannot resume
training (`--resume` says the optimizer state is missing); `--init` fine-tunes from it with a fresh optimizer.

    python3 scripts/ship-checkpoint.py RUN/checkpoint.safetensors checkpoints/fashion-cgan.safetensors
    python3 scripts/ship-checkpoint.py RUN/checkpoint.safetensors raw-g.safetensors generator.   # the trained G, not the EMA
    python3 scripts/ship-checkpoint.py RUN/best.safetensors checkpoints/python-char.safetensors  # a char model's weights

Standard library only (safetensors: 8-byte little-endian header length, JSON header, raw data).
"""
import json
import struct
import sys


def main(source, target, prefix=None):
    with open(source, "rb") as f:
        blob = f.read()
    (header_length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_length])
    data = blob[8 + header_length:]
    metadata = header.pop("__metadata__", {})
    config = json.loads(metadata["forge.config"])
    training_state = ("optimizer.", "rng.")
    if prefix is None and metadata.get("forge.kind") != "gan":
        prefix = ""  # every tensor but the training state (below)
    elif prefix is None:
        has_average = config.get("emaDecay", 0) > 0 and any(k.startswith("generator_ema.") for k in header)
        prefix = "generator_ema." if has_average else "generator."
    kept, body, offset = {}, bytearray(), 0
    for name in sorted(header):
        if not name.startswith(prefix) or name.startswith(training_state):
            continue
        entry = header[name]
        start, end = entry["data_offsets"]
        chunk = data[start:end]
        kept[name] = {"dtype": entry["dtype"], "shape": entry["shape"], "data_offsets": [offset, offset + len(chunk)]}
        body += chunk
        offset += len(chunk)
    kept["__metadata__"] = metadata
    text = json.dumps(kept, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # 8-byte alignment of the data, as the writers do
    with open(target, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(body))
    print(f"{target}: {len(kept) - 1} tensors with prefix {prefix!r}, {8 + len(text) + len(body)} bytes (from {len(blob)})")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
