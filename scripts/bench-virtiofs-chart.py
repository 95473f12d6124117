#!/usr/bin/python3
"""Chart of scripts/bench-virtiofs results (matplotlib): each workload's time under back-end B
relative to back-end A (below 1: B is faster), and the fd-exhaustion walk of each.
Usage: bench-virtiofs-chart.py virtiofs.json out.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, out = sys.argv[1], sys.argv[2]
doc = json.load(open(src))
a, b = doc["backends"][0], doc["backends"][1]
work = [w for w in a["ms"] if w in b["ms"] and a["ms"][w] and b["ms"][w]]
ratios = [b["ms"][w] / a["ms"][w] for w in work]

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 1.2]})
bars = ax.bar(work, ratios, color=["#dd8452" if r > 1 else "#55a868" for r in ratios])
ax.axhline(1.0, color="#4c72b0", linewidth=1.5, label=f"{a['name']} = 1")
for rect, r in zip(bars, ratios):
    ax.text(rect.get_x() + rect.get_width() / 2, rect.get_height(), f"{r:.2f}", ha="center", va="bottom", fontsize=9)
ax.set_ylabel(f"time of {b['name']} / time of {a['name']}  (lower is better)")
ax.set_title(f"virtio-fs guest (QEMU TCG, {doc['guestKernel']}), shares on tmpfs")
ax.legend()
ax.tick_params(axis="x", rotation=30)

names, done = [], []
for be in (a, b):
    w = be.get("walk") or {}
    res = w.get("result") or {}
    names.append(be["name"])
    done.append(res.get("entries", 0))
opts = doc["options"]
ax2.bar(names, done, color=["#4c72b0", "#dd8452"])
ax2.axhline(opts["walk"], color="#8c8c8c", linestyle="--", linewidth=1, label=f"{opts['walk']:,} files")
for i, n in enumerate(done):
    ax2.text(i, n, f"{n:,}", ha="center", va="bottom", fontsize=9)
ax2.set_title(f"guest walk under RLIMIT_NOFILE={opts['nofile']}")
ax2.set_ylabel("entries walked before the first error")
ax2.legend(loc="center left")
fig.tight_layout()
fig.savefig(out, dpi=110)
