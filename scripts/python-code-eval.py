#!/usr/bin/env python3
"""Scores function-level Python items made by `forge generate text --unit function`, beside a character
3-gram baseline trained on the same corpus. Standard library only.

    python3 scripts/python-code-eval.py --corpus CORPUS_DIR --items ITEMS_DIR [--prompt '\\n\\n\\ndef ']
        [--length 500] [--temperature 0.8] [--baseline-count 1000] [--seed 1] [--show 2]

CORPUS_DIR is what scripts/python-stdlib-corpus.py wrote (train.txt is read); ITEMS_DIR is a
`forge generate text` folder (its manifest.csv lists the items; with --validate its `valid` column holds
forge's verdicts, which this script compares with its own).

Figures printed:
  compile rate  the share of items that compile (`compile(text, name, "exec")`, which is what
                `python3 -m py_compile` runs, without writing byte code);
  novelty       the share of items whose function (the item without the prompt's leading newlines and
                without trailing whitespace) appears verbatim in train.txt: a copy, not a new function;
  open units    the share of items still open after --length characters (cut there, not at a boundary).
The baseline is a character 3-gram model of train.txt (counts of the next character after every two,
backing off to 2-grams and 1-grams for unseen pairs), sampled with the same prompt, the same unit
boundary rule as `--unit function` (two blank lines, or a new line starting at column 0 with a letter,
_ or @, never in the first generated line; the item keeps the newline before the boundary), the same
--length, at --temperature and at temperature 1.
"""
import argparse
import bisect
import collections
import csv
import math
import os
import random
import re
import sys
import warnings

BOUNDARY_START = re.compile(r"[A-Za-z_@]")


def compiles(text, name="<item>"):
    # SyntaxWarnings (e.g. "invalid escape sequence") do not fail py_compile either; keep them quiet.
    warnings.simplefilter("ignore")
    try:
        compile(text, name, "exec", dont_inherit=True)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def function_text(item, prompt):
    """The generated function: the item without the prompt's leading newlines, without trailing whitespace."""
    return item[len(prompt) - len(prompt.lstrip("\n")):].rstrip()


class CharTrigram:
    def __init__(self, text):
        self.tri = collections.defaultdict(collections.Counter)
        self.bi = collections.defaultdict(collections.Counter)
        for a, b, c in zip(text, text[1:], text[2:]):
            self.tri[a + b][c] += 1
        for b, c in zip(text, text[1:]):
            self.bi[b][c] += 1
        self.uni = collections.Counter(text)
        self.tables = {}

    def cross_entropy(self, text, alpha=0.01, vocabulary=96):
        """Nats per character of `text` under the add-alpha smoothed 3-gram (the first two characters unscored)."""
        totals = {context: sum(counts.values()) for context, counts in self.tri.items()}
        total = 0.0
        for a, b, c in zip(text, text[1:], text[2:]):
            counts = self.tri.get(a + b)
            seen = counts[c] if counts else 0
            total -= math.log((seen + alpha) / (totals.get(a + b, 0) + alpha * vocabulary))
        return total / max(1, len(text) - 2)

    def table(self, context, temperature):
        key = (context, temperature)
        if key not in self.tables:
            counts = self.tri.get(context) or self.bi.get(context[-1:]) or self.uni
            chars = sorted(counts)
            weights = [counts[c] ** (1 / temperature) for c in chars]
            cumulative, total = [], 0.0
            for w in weights:
                total += w
                cumulative.append(total)
            self.tables[key] = (chars, cumulative)
        return self.tables[key]

    def sample_unit(self, prompt, length, temperature, rng):
        """One item, ended by the unit rule of `forge generate text --unit function` or by `length`."""
        text = prompt
        generated = ""
        for _ in range(length):
            chars, cumulative = self.table(text[-2:], temperature)
            c = chars[min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(chars) - 1)]
            generated += c
            text += c
            if generated.endswith("\n\n\n"):
                return prompt + generated[:-3] + "\n", False
            if len(generated) >= 2 and generated[-2] == "\n" and BOUNDARY_START.match(c):
                return prompt + generated[:-2] + "\n", False
        return text, True


def summarise(label, items, prompt, length, train_text, show=0):
    n = len(items)
    valid = [compiles(t) for t in items]
    functions = [function_text(t, prompt) for t in items]
    copied = [f in train_text for f in functions]
    open_units = [len(t) - len(prompt) >= length for t in items]
    print(f"{label}: {n} items")
    print(f"  compile rate {sum(valid)}/{n} = {100 * sum(valid) / n:.1f} %")
    print(f"  novelty: verbatim in train.txt {sum(copied)}/{n} = {100 * sum(copied) / n:.1f} % "
          f"(of the compiling ones {sum(c and v for c, v in zip(copied, valid))}/{sum(valid)})")
    print(f"  open units (cut at --length {length}): {sum(open_units)}/{n} = {100 * sum(open_units) / n:.1f} %; "
          f"mean length {sum(map(len, functions)) / n:.0f} chars, lines {sum(f.count(chr(10)) + 1 for f in functions) / n:.1f}")
    closed = [v for v, o in zip(valid, open_units) if not o]
    if closed:
        print(f"  compile rate of the closed units {sum(closed)}/{len(closed)} = {100 * sum(closed) / len(closed):.1f} %")
    shown = 0
    for t, v, c, o in zip(items, valid, copied, open_units):
        if shown >= show:
            break
        if v and not c and not o and 3 <= t.count("\n") <= 14:
            print(f"  --- a compiling, new item ---\n{function_text(t, prompt)}\n  ---")
            shown += 1
    return valid


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--items", required=True)
    parser.add_argument("--prompt", default="\\n\\n\\ndef ")
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--baseline-count", type=int, default=1000, help="3-gram items (0: no baseline)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--show", type=int, default=2)
    args = parser.parse_args()
    prompt = args.prompt.replace("\\n", "\n").replace("\\t", "\t")

    with open(os.path.join(args.corpus, "train.txt"), encoding="ascii") as f:
        train_text = f.read()
    with open(os.path.join(args.items, "manifest.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    items, forge_valid = [], []
    for row in rows:
        path = os.path.join(args.items, row["file"])
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: generate with --keep-invalid so every item can be scored")
        with open(path, encoding="utf-8") as f:
            items.append(f.read())
        forge_valid.append(row.get("valid", ""))
    valid = summarise(f"model ({args.items})", items, prompt, args.length, train_text, args.show)
    if any(forge_valid):
        agree = sum((v == "true") == ok for v, ok in zip(forge_valid, valid))
        print(f"  forge --validate verdicts (manifest valid column) agree with compile() on {agree}/{len(items)} items; "
              f"valid in the manifest: {sum(v == 'true' for v in forge_valid)}")

    if args.baseline_count < 1:
        return
    model = CharTrigram(train_text)
    val_path = os.path.join(args.corpus, "val.txt")
    if os.path.exists(val_path):
        with open(val_path, encoding="ascii") as f:
            print(f"3-gram baseline: val.txt loss {model.cross_entropy(f.read()):.4f} nats/char (add-0.01 smoothing over 96 characters)")
    for temperature in sorted({args.temperature, 1.0}):
        rng = random.Random(args.seed)
        baseline = [model.sample_unit(prompt, args.length, temperature, rng)[0] for _ in range(args.baseline_count)]
        summarise(f"3-gram baseline, temperature {temperature}, seed {args.seed}", baseline, prompt, args.length, train_text)


if __name__ == "__main__":
    main()
