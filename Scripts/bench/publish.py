#!/usr/bin/env python3
"""Copies Scripts/bench/results.md into README.md between the bench markers.

Called by run.sh after a full run (not --quick), so the README's numbers always come from
a real run of the script, with its date and machine description, never typed by hand.
"""
import pathlib
import sys

here = pathlib.Path(__file__).resolve().parent
readme = here.parent.parent / "README.md"
results = (here / "results.md").read_text().splitlines()
body = "\n".join(line for line in results if not line.startswith("# "))
begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
text = readme.read_text()
if begin not in text or end not in text:
    sys.exit(f"publish: {readme} has no {begin} … {end} section")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
readme.write_text(f"{head}{begin}\n{body.strip()}\n{end}{tail}")
print(f"publish: README.md updated from {here / 'results.md'}")
