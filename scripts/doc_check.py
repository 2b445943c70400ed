#!/usr/bin/env python3
"""Checks that every public and package declaration of the given modules has a documentation comment.

Usage: doc_check.py DIR... (default: the SDK, Sources/AtriumClient, and the DICOM library, Sources/AtriumDICOM).
A declaration counts as documented when the nearest line above it, skipping attribute lines (`@...`), starts
with `///` or ends with `*/`. Extensions are not declarations of their own; generated files are skipped.
Prints the count and each undocumented declaration as `file:line: text`; exit status 1 when any is missing.
"""
import glob
import re
import sys

DECLARATION = re.compile(
    r"^\s*(@\w+(\([^)]*\))?\s+)*(public|package|open)(\s+private\(set\))?\s+(?!import)(\w+\s+)*"
    r"(func|var|let|init|struct|enum|class|actor|typealias|protocol|subscript|case)\b"
)


def main(roots):
    total, missing = 0, []
    for root in roots:
        for path in sorted(glob.glob(root + "/**/*.swift", recursive=True)):
            if "Generated" in path:
                continue
            lines = open(path).read().split("\n")
            for index, line in enumerate(lines):
                if not DECLARATION.match(line):
                    continue
                total += 1
                above = index - 1
                while above >= 0 and re.match(r"^\s*@", lines[above]):
                    above -= 1
                previous = lines[above].strip() if above >= 0 else ""
                if not (previous.startswith("///") or previous.endswith("*/")):
                    missing.append(f"{path}:{index + 1}: {line.strip()[:100]}")
    print(f"doc-check: {total} public or package declarations in {', '.join(roots)}; {len(missing)} undocumented")
    for item in missing:
        print(f"doc-check: MISSING {item}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["Sources/AtriumClient", "Sources/AtriumDICOM"]))
