#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into Fuzz/seeds/<target>/ (run from anywhere; standard
library only). Image seeds are the DataIO test fixtures (PngSuite-style PNGs, baseline/progressive
JPEGs); the others are small valid files made here, plus a few cut short or with wrong sizes, so
the fuzzer starts inside every format's structure rather than having to discover its magic numbers."""
import gzip, json, os, shutil, struct, wave

root = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(root, "..", "Tests", "DataIOTests", "Fixtures")
seeds = os.path.join(root, "seeds")


def target(name):
    path = os.path.join(seeds, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def put(folder, name, data):
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


for kind, ext in (("png", ".png"), ("jpeg", ".jpg")):
    out = target(kind)
    for name in sorted(os.listdir(os.path.join(fixtures, kind))):
        if name.endswith(ext):
            shutil.copy(os.path.join(fixtures, kind, name), out)

# WAV / AIFF: PCM 8/16/24/32-bit, float, mono and stereo, RIFX, AIFF, one cut short.
out = target("wav")
samples = [int(3000 * ((i * 37) % 17 - 8)) for i in range(48)]
for width in (1, 2, 3, 4):
    for channels in (1, 2):
        path = os.path.join(out, f"pcm{8 * width}_{channels}ch.wav")
        with wave.open(path, "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(width)
            w.setframerate(8000)
            frames = b"".join(
                (((s >> 8) + 128) & 0xFF).to_bytes(1, "little") if width == 1 else (s << (8 * (width - 2))).to_bytes(width, "little", signed=True)
                for s in samples[: 24 * channels])
            w.writeframes(frames)


def riff(fmt_tag, channels, bits, payload, big=False):
    e = ">" if big else "<"
    block = channels * bits // 8
    fmt = struct.pack(e + "HHIIHH", fmt_tag, channels, 8000, 8000 * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack(e + "I", len(fmt)) + fmt + b"data" + struct.pack(e + "I", len(payload)) + payload
    return (b"RIFX" if big else b"RIFF") + struct.pack(e + "I", len(body)) + body


floats = b"".join(struct.pack("<f", s / 32768) for s in samples[:16])
put(out, "float32.wav", riff(3, 1, 32, floats))
pcm16 = b"".join(struct.pack("<h", s) for s in samples[:16])
put(out, "rifx16.wav", riff(1, 1, 16, b"".join(struct.pack(">h", s) for s in samples[:16]), big=True))
put(out, "truncated16.wav", riff(1, 1, 16, pcm16 * 8)[:80])
aiff_comm = struct.pack(">hIh", 1, 16, 16) + b"\x40\x0b\xfa\x00\x00\x00\x00\x00\x00\x00"  # 8000 Hz as an 80-bit float
aiff_ssnd = struct.pack(">II", 0, 0) + b"".join(struct.pack(">h", s) for s in samples[:16])
aiff = b"AIFF" + b"COMM" + struct.pack(">I", len(aiff_comm)) + aiff_comm + b"SSND" + struct.pack(">I", len(aiff_ssnd)) + aiff_ssnd
put(out, "pcm16.aiff", b"FORM" + struct.pack(">I", len(aiff)) + aiff)

# IDX: labels (rank 1), images (rank 3), gzip-compressed, and a size mismatch.
out = target("idx")
labels = struct.pack(">BBBBI", 0, 0, 8, 1, 6) + bytes(range(6))
images = struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 4, 4) + bytes((i * 29) % 256 for i in range(32))
put(out, "labels.idx1", labels)
put(out, "images.idx3", images)
put(out, "images.idx3.gz", gzip.compress(images, mtime=0))
put(out, "short.idx3", images[:-3])


# safetensors: the Python-written fixture, and small files of every dtype family with metadata.
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


out = target("safetensors")
shutil.copy(os.path.join(fixtures, "python_written.safetensors"), out)
put(out, "f32.safetensors", safetensors({"w": ("F32", [2, 2], struct.pack("<4f", 1, -2, 3.5, 0))}, {"forge.kind": "gan"}))
put(out, "ints.safetensors", safetensors({"step": ("I64", [1], struct.pack("<q", 7)), "b": ("BOOL", [2], b"\x01\x00"),
                                          "u": ("U8", [3], b"\x01\x02\x03")}))
put(out, "half.safetensors", safetensors({"h": ("F16", [2], b"\x00\x3c\x00\xc0"), "bf": ("BF16", [1], b"\x80\x3f")}))
put(out, "empty.safetensors", safetensors({}, {}))

# JSON: headers and metadata as Forge reads them, with escapes, nesting and numbers.
out = target("json")
shutil.copy(os.path.join(fixtures, "python_written.json"), out)
for i, text in enumerate([
    '{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{"k":"v"}}',
    '[1,-2.5e-3,3E+8,0,-0,true,false,null,"\\u00fc\\ud83d\\ude00\\n\\t\\"\\\\\\/"]',
    '{"nested":[[[[{"x":[]}]]]],"empty":{},"s":""}',
    '  {"big": 18446744073709551615, "neg": -9223372036854775808, "frac": 0.000001}  ',
]):
    put(out, f"text{i}.json", text.encode())
