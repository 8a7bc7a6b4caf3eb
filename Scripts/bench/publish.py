#!/usr/bin/env python3
"""Copies benchmark result files into README.md's generated blocks.

A block is `<!-- bench:begin NAME -->` … `<!-- bench:end NAME -->` and holds
Scripts/bench/NAME.md without its `# ` title lines. The unnamed markers
`<!-- bench:begin -->` … `<!-- bench:end -->` mean NAME = results.

    publish.py            every block the README has
    publish.py NAME...    only these

Called by run.sh after a full run (not --quick), so the README's numbers always come from a
result file with its date, never typed by hand. The docs test (Tests/DocsTests) fails when a
block differs from its file, or a number in the README's Performance section is outside a
block.
"""
import pathlib
import re
import sys

here = pathlib.Path(__file__).resolve().parent
readme = here.parent.parent / "README.md"
BLOCK = re.compile(r"<!-- bench:begin(?: ([a-z0-9-]+))? -->\n.*?<!-- bench:end(?: ([a-z0-9-]+))? -->", re.S)


def body(name):
    lines = (here / f"{name}.md").read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("# ")).strip()


def main(names):
    text = readme.read_text()
    found = []

    def replace(m):
        begin, end = m.group(1), m.group(2)
        if begin != end:
            sys.exit(f"publish: mismatched markers bench:begin {begin} / bench:end {end}")
        name = begin or "results"
        if names and name not in names:
            return m.group(0)
        found.append(name)
        suffix = f" {begin}" if begin else ""
        return f"<!-- bench:begin{suffix} -->\n{body(name)}\n<!-- bench:end{suffix} -->"

    new = BLOCK.sub(replace, text)
    missing = [n for n in names if n not in found]
    if missing:
        sys.exit(f"publish: {readme} has no block for {', '.join(missing)}")
    if not found:
        sys.exit(f"publish: {readme} has no <!-- bench:begin NAME --> … <!-- bench:end NAME --> block")
    readme.write_text(new)
    print(f"publish: README.md updated from {', '.join(f'Scripts/bench/{n}.md' for n in found)}")


if __name__ == "__main__":
    main(sys.argv[1:])
