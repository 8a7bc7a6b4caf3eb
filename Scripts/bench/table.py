#!/usr/bin/env python3
"""Turn run.sh's raw samples (setup, metric, round, value; tab-separated) into the markdown
table of medians and ratios. Extra args: SETUP=REASON (REASON non-empty: the setup is n/a)."""
import statistics
import sys

SETUPS = [("bridge", "Linux bridge"), ("ovs", "OVS userspace"), ("tapestry", "Tapestry")]
METRICS = [
    ("tcp1", "TCP 1 stream (Gb/s, higher is better)", "{:.2f}"),
    ("tcp2", "TCP 2 streams (Gb/s, higher is better)", "{:.2f}"),
    ("rtt", "ping RTT avg (µs, lower is better)", "{:.0f}"),
    ("pps", "64B frames forwarded (Mpps, higher is better)", "{:.3f}"),
    ("gen", "64B frames offered by the generator (Mpps)", "{:.3f}"),
    ("cpu1", "switch CPU during TCP 1 stream (% of a core)", "{:.0f}"),
    ("cpu2", "switch CPU during TCP 2 streams (% of a core)", "{:.0f}"),
]

samples = {}
with open(sys.argv[1]) as f:
    for line in f:
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 4 or parts[3] == "":
            continue
        try:
            samples.setdefault((parts[0], parts[1]), []).append(float(parts[3]))
        except ValueError:
            pass
notes = {}
for arg in sys.argv[2:]:
    k, _, v = arg.partition("=")
    if v:
        notes[k] = v


def median(setup, metric):
    v = samples.get((setup, metric))
    return statistics.median(v) if v else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return "{:.2f}×".format(a / b)


header = ["metric"] + [name for _, name in SETUPS] + ["Tapestry/bridge", "Tapestry/OVS"]
print("| " + " | ".join(header) + " |")
print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
for key, label, fmt in METRICS:
    row = [label]
    vals = {}
    for s, _ in SETUPS:
        m = median(s, key)
        vals[s] = m
        if m is None:
            row.append("n/a" + ("¹" if s in notes else ""))
        else:
            n = len(samples[(s, key)])
            row.append(fmt.format(m))
    row.append(ratio(vals["tapestry"], vals["bridge"]))
    row.append(ratio(vals["tapestry"], vals["ovs"]))
    print("| " + " | ".join(row) + " |")
print()
rounds = {s: len(samples.get((s, "rtt"), [])) for s, _ in SETUPS}
print("Rounds measured: " + ", ".join(f"{name} {rounds[s]}" for s, name in SETUPS) +
      ". CPU is n/a for the kernel bridge (no switch process).")
for s, name in SETUPS:
    if s in notes:
        print(f"\n¹ {name}: n/a — {notes[s]}")
