#!/usr/bin/env python3
"""Turn run.sh's raw samples (setup, metric, round, value; tab-separated) into the markdown
table of medians and ratios. Extra args: SETUP=REASON (REASON non-empty: the setup is n/a),
--poll-us=N (the tapestry-poll setup's TAPESTRY_BUSY_POLL_US, for the note under the table)."""
import statistics
import sys

SETUPS = [("bridge", "Linux bridge"), ("ovs", "OVS userspace"), ("copier", "C copier (reference)"),
          ("tapestry", "Tapestry"), ("tapestry-poll", "Tapestry (poll)")]
# (numerator, denominator) setups of the ratio columns.
RATIOS = [("tapestry", "bridge"), ("tapestry", "ovs"), ("tapestry-poll", "bridge"), ("tapestry-poll", "ovs")]
METRICS = [
    ("tcp1", "TCP 1 stream (Gb/s, higher is better)", "{:.2f}"),
    ("tcp2", "TCP 2 streams (Gb/s, higher is better)", "{:.2f}"),
    ("rtt", "ping RTT avg (µs, lower is better)", "{:.0f}"),
    ("pps", "64B frames forwarded, 1 flow (Mpps, higher is better)", "{:.3f}"),
    ("gen", "64B frames offered by the generator, 1 flow (Mpps)", "{:.3f}"),
    ("pps16", "64B frames forwarded, 16 flows (Mpps, higher is better)", "{:.3f}"),
    ("gen16", "64B frames offered by the generator, 16 flows (Mpps)", "{:.3f}"),
    ("cpu1", "switch CPU during TCP 1 stream (% of a core)", "{:.0f}"),
    ("cpu2", "switch CPU during TCP 2 streams (% of a core)", "{:.0f}"),
    ("cpuping", "switch CPU during ping RTT test (% of a core)", "{:.0f}"),
]
SHORT = {"bridge": "bridge", "ovs": "OVS", "tapestry": "Tapestry", "tapestry-poll": "Tapestry (poll)"}

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
poll_us = 20000
for arg in sys.argv[2:]:
    k, _, v = arg.partition("=")
    if k == "--poll-us":
        poll_us = int(v)
    elif v:
        notes[k] = v
poll_ms = poll_us / 1000


def median(setup, metric):
    v = samples.get((setup, metric))
    return statistics.median(v) if v else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return "{:.2f}×".format(a / b)


header = ["metric"] + [name for _, name in SETUPS] + [f"{SHORT[a]}/{SHORT[b]}" for a, b in RATIOS]
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
            row.append(fmt.format(m))
    row += [ratio(vals[a], vals[b]) for a, b in RATIOS]
    print("| " + " | ".join(row) + " |")
print()
rounds = {s: len(samples.get((s, "rtt"), [])) for s, _ in SETUPS}
print("Rounds measured: " + ", ".join(f"{name} {rounds[s]}" for s, name in SETUPS) +
      ". CPU is n/a for the kernel bridge (no switch process).")
print("\nThe C copier (Scripts/bench/tapcopy.c, a reference, not part of Tapestry) does nothing but "
      "one read and one write per frame between two TAPs, on one thread: the kernel's share of the "
      "work alone, so about the best a switch that moves frames through TAP fds that way can do on "
      "this machine. Tapestry (poll) is the same Tapestry topology with "
      f"TAPESTRY_BUSY_POLL_US={poll_us} (after a batch with work each datapath "
      f"thread spins up to {poll_ms:g} ms before sleeping), which trades CPU for latency (see the "
      "CPU during the ping test).")
for s, name in SETUPS:
    if s in notes:
        print(f"\n¹ {name}: n/a — {notes[s]}")
