#!/usr/bin/env python3
"""Makes the small committed fixtures DataIOTests compare against.

Needs numpy, safetensors, Pillow (and torch, for the BF16 tensor); e.g.
    /work/torch-venv/bin/python make_fixtures.py safetensors
    /tmp/st-venv/bin/python make_fixtures.py png jpeg

* python_written.safetensors + python_written.json: tensors of every dtype Forge reads, written by
  the reference `safetensors` package, and their values as JSON.
* png/*.png: PNGs in every colour type and bit depth, some Adam7-interlaced, written by the small
  encoder below (Pillow cannot write 2/4-bit gray, 16-bit RGB or interlaced files), and
  png/expected.json with the samples libpng should produce (after palette/low-depth expansion).
* jpeg/*.jpg: baseline and progressive, gray and YCbCr JPEGs written by Pillow (libjpeg-turbo),
  and jpeg/expected.json with the pixels Pillow decodes them to.
"""
import json
import os
import struct
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- safetensors
def make_safetensors():
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1234)
    tensors = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": (rng.standard_normal((5,)) * 100).astype(np.float16),
        "f64": rng.standard_normal((2, 2, 2)).astype(np.float64),
        "i64": np.array([[-(2**40), -1, 0], [1, 2**40, 7]], dtype=np.int64),
        "i32": np.array([-5, 0, 123456], dtype=np.int32),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    metadata = {"format": "pt", "model": "fixture", "note": "json \"quoted\" ünïcode"}
    values = {name: {"dtype": str(t.dtype), "shape": list(t.shape), "values": t.astype(np.float64).ravel().tolist()}
              for name, t in tensors.items()}
    path = os.path.join(HERE, "python_written.safetensors")
    try:
        import torch
        from safetensors.torch import save_file as save_torch

        torch_tensors = {name: torch.from_numpy(t) for name, t in tensors.items()}
        bf16 = torch.tensor([1.0, -2.5, 3.140625, 1e10, -1e-3], dtype=torch.bfloat16)
        torch_tensors["bf16"] = bf16
        values["bf16"] = {"dtype": "bfloat16", "shape": [5], "values": bf16.float().tolist()}
        save_torch(torch_tensors, path, metadata=metadata)
    except ImportError:
        save_file(tensors, path, metadata=metadata)
    with open(os.path.join(HERE, "python_written.json"), "w") as f:
        json.dump({"metadata": metadata, "tensors": values}, f, indent=1, sort_keys=True)


# ---------------------------------------------------------------- PNG
def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def pack_row(samples, depth):
    """Packs one row of samples (ints) at `depth` bits each, MSB first."""
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    out, acc, bits = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        bits += depth
        if bits == 8:
            out.append(acc)
            acc, bits = 0, 0
    if bits:
        out.append(acc << (8 - bits))
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def encode_png(rows, width, height, color_type, depth, channels, interlace=False, palette=None, trns=None):
    """rows[y][x] is a tuple of `channels` raw sample values. Filter type 0 on every row."""
    def scanlines(xs, ys):
        data = bytearray()
        for y in ys:
            samples = [s for x in xs for s in rows[y][x]]
            data += b"\x00" + pack_row(samples, depth)
        return data

    if interlace:
        raw = bytearray()
        for x0, y0, dx, dy in ADAM7:
            xs, ys = list(range(x0, width, dx)), list(range(y0, height, dy))
            if xs and ys:
                raw += scanlines(xs, ys)
    else:
        raw = scanlines(range(width), range(height))
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        png += chunk(b"PLTE", b"".join(bytes(p) for p in palette))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    png += chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    png += chunk(b"IEND", b"")
    return png


def make_pngs():
    folder = os.path.join(HERE, "png")
    os.makedirs(folder, exist_ok=True)
    width, height = 11, 7  # odd sizes exercise partial bytes and empty Adam7 passes
    expected = {}

    def pattern(x, y, c, levels):
        return (x * 7 + y * 13 + c * 29 + x * y) % levels

    def save(name, rows, color_type, depth, channels, expanded, out_channels, out_depth, **kw):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(encode_png(rows, width, height, color_type, depth, channels, **kw))
        maximum = (1 << out_depth) - 1
        expected[name] = {"width": width, "height": height, "channels": out_channels,
                          "samples": [s for y in range(height) for x in range(width) for s in expanded(x, y)],
                          "max": maximum}

    for depth in (1, 2, 4, 8, 16):
        levels = 1 << depth
        rows = [[(pattern(x, y, 0, levels),) for x in range(width)] for y in range(height)]
        scale = 1 if depth >= 8 else 255 // (levels - 1)  # libpng scales 1/2/4-bit gray up to 8 bits
        out_depth = 16 if depth == 16 else 8
        for interlace in (False, True):
            save(f"gray{depth}{'_interlaced' if interlace else ''}.png", rows, 0, depth, 1,
                 lambda x, y, rows=rows, scale=scale: [rows[y][x][0] * scale], 1, out_depth, interlace=interlace)
    for depth in (8, 16):
        levels = 1 << depth
        out = lambda n: [[tuple(pattern(x, y, c, levels) for c in range(n)) for x in range(width)] for y in range(height)]
        ga, rgb, rgba = out(2), out(3), out(4)
        save(f"gray_alpha{depth}.png", ga, 4, depth, 2, lambda x, y, r=ga: list(r[y][x]), 2, depth)
        save(f"rgb{depth}.png", rgb, 2, depth, 3, lambda x, y, r=rgb: list(r[y][x]), 3, depth)
        save(f"rgba{depth}.png", rgba, 6, depth, 4, lambda x, y, r=rgba: list(r[y][x]), 4, depth)
        save(f"rgb{depth}_interlaced.png", rgb, 2, depth, 3, lambda x, y, r=rgb: list(r[y][x]), 3, depth, interlace=True)
    palette = [((i * 37) % 256, (i * 91) % 256, (i * 53 + 10) % 256) for i in range(16)]
    for depth in (1, 2, 4, 8):
        levels = min(1 << depth, len(palette))
        rows = [[(pattern(x, y, 0, levels),) for x in range(width)] for y in range(height)]
        save(f"palette{depth}.png", rows, 3, depth, 1,
             lambda x, y, rows=rows: list(palette[rows[y][x][0]]), 3, 8, palette=palette[:levels])
    rows = [[(pattern(x, y, 0, 4),) for x in range(width)] for y in range(height)]
    alphas = [0, 85, 170, 255]
    save("palette4_trns_interlaced.png", rows, 3, 4, 1,
         lambda x, y: list(palette[rows[y][x][0]]) + [alphas[rows[y][x][0]]], 4, 8,
         palette=palette[:4], trns=bytes(alphas), interlace=True)
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f, sort_keys=True)


# ---------------------------------------------------------------- JPEG
def make_jpegs():
    from PIL import Image

    folder = os.path.join(HERE, "jpeg")
    os.makedirs(folder, exist_ok=True)
    width, height = 24, 17
    x = np.arange(width)[None, :]
    y = np.arange(height)[:, None]
    rgb = np.stack([(x * 10) % 256 + 0 * y, (y * 15) % 256 + 0 * x, ((x + y) * 6) % 256], axis=-1).astype(np.uint8)
    expected = {}
    cases = [
        ("rgb_baseline.jpg", Image.fromarray(rgb, "RGB"), dict(quality=90)),
        ("rgb_progressive.jpg", Image.fromarray(rgb, "RGB"), dict(quality=85, progressive=True)),
        ("rgb_444.jpg", Image.fromarray(rgb, "RGB"), dict(quality=95, subsampling=0)),
        ("gray_baseline.jpg", Image.fromarray(rgb[..., 1], "L"), dict(quality=90)),
        ("gray_progressive.jpg", Image.fromarray(rgb[..., 0], "L"), dict(quality=80, progressive=True)),
    ]
    for name, image, options in cases:
        path = os.path.join(folder, name)
        image.save(path, "JPEG", **options)
        decoded = np.asarray(Image.open(path))
        channels = 1 if decoded.ndim == 2 else decoded.shape[2]
        expected[name] = {"width": width, "height": height, "channels": channels,
                          "samples": decoded.ravel().tolist()}
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f, sort_keys=True)


if __name__ == "__main__":
    # Pick parts by name, e.g. `make_fixtures.py safetensors` with a torch venv and
    # `make_fixtures.py png jpeg` with a Pillow one; no argument makes all three.
    import sys

    parts = sys.argv[1:] or ["safetensors", "png", "jpeg"]
    for part in parts:
        {"safetensors": make_safetensors, "png": make_pngs, "jpeg": make_jpegs}[part]()
