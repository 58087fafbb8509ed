#!/usr/bin/env python3
"""Lists the public declarations under Sources/ that have no `///` doc comment right above them
(attributes such as @discardableResult may sit between), per module, and their count.

    python3 scripts/undocumented-public-symbols.py [--list] [MODULE ...]

Exit status 1 when any is found, so it can guard a module once it is complete. Extensions are not
counted (their members are). Modifiers between `public` and the keyword are skipped, so
`public private(set) var`, `public static prefix func -` and `public lazy var` count too.
Standard library only; a line scanner, not a Swift parser: a declaration split over lines is
judged by its first line, and `public let a: A, b: B` counts once.
"""
import collections
import glob
import re
import sys

DECLARATION = re.compile(
    r"^\s*(@\w+(\(.*?\))?\s+)*(public|open)\s+"
    r"((private|fileprivate|internal|package)\(set\)\s+|final\s+|static\s+|class\s+(?=func|var)|override\s+|mutating\s+|"
    r"nonmutating\s+|nonisolated(\(unsafe\))?\s+|convenience\s+|required\s+|indirect\s+|lazy\s+|weak\s+|unowned\s+|"
    r"prefix\s+|postfix\s+|infix\s+)*"
    r"(?P<kind>func|var|let|init|class|struct|enum|protocol|typealias|subscript|case|extension|actor)\b")


def main(arguments):
    show = "--list" in arguments
    modules = [a for a in arguments if not a.startswith("--")]
    missing, total = collections.Counter(), collections.Counter()
    listed = []
    for path in sorted(glob.glob("Sources/**/*.swift", recursive=True)):
        module = path.split("/")[1]
        if modules and module not in modules:
            continue
        lines = open(path, encoding="utf-8").read().split("\n")
        for i, line in enumerate(lines):
            m = DECLARATION.match(line)
            if not m or m.group("kind") == "extension":
                continue
            total[module] += 1
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("@"):
                j -= 1
            above = lines[j].strip() if j >= 0 else ""
            if not (above.startswith("///") or above.endswith("*/")):
                missing[module] += 1
                listed.append(f"{path}:{i + 1}: {line.strip()[:100]}")
    for module in sorted(total):
        print(f"{module:12s} {total[module]:5d} public declarations, {missing[module]:4d} without ///")
    print(f"{'all':12s} {sum(total.values()):5d} public declarations, {sum(missing.values()):4d} without ///")
    if show:
        print("\n".join(listed))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
