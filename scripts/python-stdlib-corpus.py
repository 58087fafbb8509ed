#!/usr/bin/env python3
"""Builds a Python code corpus for a char model from the standard library of the python3 that runs it.

    python3 scripts/python-stdlib-corpus.py [--code-only] OUT_DIR

Writes OUT_DIR/train.txt, OUT_DIR/val.txt (a held-out split of whole files), OUT_DIR/files.csv (every
file considered, its split or why it was left out) and OUT_DIR/val-eval.txt (see below), and prints the
sizes and sha256 of each. Standard library only; the same python3 gives the same bytes.

Which files, in which order:
  - every *.py under sysconfig's stdlib folder, sorted by their path relative to it (POSIX, code-point
    order), so the order does not depend on the file system's;
  - left out: site-packages/dist-packages (not the standard library), test suites (folders named test,
    tests, idle_test, and lib2to3's test data, which is deliberately broken code), encodings/ (machine-
    made codec tables that would dominate the corpus with hex literals) and pydoc_data/ (one huge string);
  - character filter: line ends normalised to \\n; a file is kept only when every character is printable
    ASCII (U+0020-U+007E) or \\n. A file with anything else (tabs, non-ASCII letters, form feeds) is left
    out whole rather than edited, so that every kept file is the code its authors wrote;
  - a kept file must compile with this python3 (compile(..., 'exec')), so the corpus holds only valid code;
  - --code-only: docstrings and comments are taken out (see strip_docstrings_and_comments). A third of the
    stdlib's characters are English prose in docstrings and comments, and prose is where a small char
    model's functions run long and leave a string open. A file whose result is not the same program
    (same AST, docstrings aside) is left out whole and listed with the reason.

The held-out split is of whole files: a file goes to val.txt when the first byte of the sha256 of its
relative path is < 26 (about 10 %), so adding or removing one file never moves another across the split.
Files are joined with two blank lines ("\\n\\n\\n"), the separator PEP 8 puts between top-level definitions.

val-eval.txt is the last 9 x len(val.txt) characters of train.txt followed by val.txt: `forge eval char`
scores the last 10 % of the text it is given, so on this file it scores exactly val.txt.
"""
import ast
import csv
import hashlib
import io
import os
import re
import sys
import sysconfig
import tokenize

EXCLUDED_FOLDERS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "encodings", "pydoc_data", "__pycache__"}
SEPARATOR = "\n\n\n"


def allowed(text):
    return all(c == "\n" or " " <= c <= "~" for c in text)


def docstring_owners(tree):
    """The module, class and function nodes whose first statement is a string literal (a docstring)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                yield node, first


def without_docstrings(tree):
    """ast.dump of the tree with every docstring removed (a body left empty becomes `pass`)."""
    for node, _ in list(docstring_owners(tree)):
        node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def strip_docstrings_and_comments(text):
    """The same program without docstrings and comments, or None when that cannot be done line-wise.

    Works on lines rather than regenerating the source (ast.unparse would rewrite quotes, spacing and
    blank lines), so what stays is the authors' layout. A docstring must own its lines; a body that was
    only a docstring gets `pass` at the docstring's indentation. A comment alone on its line drops the
    line, a trailing one is cut with the spaces before it. Runs of blank lines left behind are capped at
    two, the PEP 8 gap. The result is checked: it must parse to the original's AST minus docstrings.
    """
    tree = ast.parse(text)
    lines = text.split("\n")
    dropped, replaced = set(), {}
    for node, docstring in docstring_owners(tree):
        start, end = docstring.lineno, docstring.end_lineno
        if lines[start - 1][:docstring.col_offset].strip() or lines[end - 1][docstring.end_col_offset:].strip():
            return None
        dropped.update(range(start, end + 1))
        if len(node.body) == 1 and not isinstance(node, ast.Module):
            replaced[start] = " " * docstring.col_offset + "pass"
    comment_column = {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            comment_column[token.start[0]] = token.start[1]
    kept = []
    for number, line in enumerate(lines, 1):
        if number in replaced:
            kept.append(replaced[number])
            continue
        if number in dropped:
            continue
        if number in comment_column:
            line = line[:comment_column[number]].rstrip()
            if not line:
                continue
        kept.append(line)
    result = re.sub(r"\n{4,}", "\n\n\n", "\n".join(kept)).strip("\n") + "\n"
    try:
        if without_docstrings(ast.parse(result)) != without_docstrings(ast.parse(text)):
            return None
    except SyntaxError:
        return None
    return result


def main():
    arguments = sys.argv[1:]
    code_only = "--code-only" in arguments
    arguments = [a for a in arguments if a != "--code-only"]
    if len(arguments) != 1 or arguments[0].startswith("-"):
        sys.exit("usage: python3 scripts/python-stdlib-corpus.py [--code-only] OUT_DIR")
    out = arguments[0]
    root = sysconfig.get_paths()["stdlib"]
    paths = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [s for s in subfolders if s not in EXCLUDED_FOLDERS]
        rel_folder = os.path.relpath(folder, root)
        if rel_folder.replace(os.sep, "/").startswith("lib2to3/tests"):
            continue
        for name in files:
            if name.endswith(".py"):
                paths.append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    paths.sort()

    train, val, listing = [], [], []
    for rel in paths:
        with open(os.path.join(root, rel), "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        except UnicodeDecodeError:
            listing.append((rel, "skipped: not UTF-8", len(raw)))
            continue
        if not allowed(text):
            listing.append((rel, "skipped: character filter", len(text)))
            continue
        try:
            compile(text, rel, "exec")
        except (SyntaxError, ValueError) as error:
            listing.append((rel, f"skipped: does not compile ({type(error).__name__})", len(text)))
            continue
        if code_only:
            stripped = strip_docstrings_and_comments(text)
            if stripped is None:
                listing.append((rel, "skipped: --code-only could not keep the program the same", len(text)))
                continue
            text = stripped
        text = text.strip("\n") + "\n"
        held_out = hashlib.sha256(rel.encode()).digest()[0] < 26
        (val if held_out else train).append(text)
        listing.append((rel, "val" if held_out else "train", len(text)))

    os.makedirs(out, exist_ok=True)
    train_text = SEPARATOR.join(t.rstrip("\n") for t in train) + "\n"
    val_text = SEPARATOR.join(t.rstrip("\n") for t in val) + "\n"
    eval_text = train_text[-9 * len(val_text):] + val_text
    assert int(len(eval_text) * 0.9) == len(eval_text) - len(val_text)
    outputs = {"train.txt": train_text, "val.txt": val_text, "val-eval.txt": eval_text}
    for name, text in outputs.items():
        with open(os.path.join(out, name), "w", encoding="ascii", newline="\n") as f:
            f.write(text)
    with open(os.path.join(out, "files.csv"), "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "split", "characters"])
        writer.writerows(listing)

    counts = {}
    for _, split, _ in listing:
        counts[split] = counts.get(split, 0) + 1
    print(f"python {sys.version.split()[0]} stdlib {root}: {len(paths)} files considered"
          + (" (--code-only: docstrings and comments taken out)" if code_only else ""))
    for split in sorted(counts):
        print(f"  {counts[split]:5d} {split}")
    for name in list(outputs) + ["files.csv"]:
        path = os.path.join(out, name)
        with open(path, "rb") as f:
            data = f.read()
        print(f"{path}: {len(data):,} characters, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
