#!/usr/bin/python3
"""Chart of scripts/bench results (matplotlib): speed of every target relative to native per
workload, and the handlefs fd-budget sweep.  Usage: bench-chart.py results.json out.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, out = sys.argv[1], sys.argv[2]
doc = json.load(open(src))
targets = [t for t in doc["targets"] if t["id"] != "native"]
workloads = [w for w in doc["ratios"]["to_native"][targets[0]["id"]].keys()]
labels = {
    "create_stat_unlink": "create+stat+unlink",
    "tar_x": "tar -x",
    "find_stat_cold": "find+stat (cold)",
    "du_s": "du -s",
    "git_status": "git status",
    "seq_write": "seq write 1M",
    "seq_read": "seq read 1M",
    "rand_read_4k": "rand read 4K",
    "rand_read_4k_4jobs": "rand read 4K x4",
}
colors = {"bindfs": "#8c8c8c", "passthrough_ll": "#4c72b0", "passthrough_ll-1t": "#8fa9d6", "handlefs-raw": "#dd8452", "handlefs-passthrough": "#c44e52", "handlefs-fuse-native": "#55a868"}

has_sweep = bool(doc.get("sweep"))
fig, axes = plt.subplots(1, 2 if has_sweep else 1, figsize=(14 if has_sweep else 10, 6),
                         gridspec_kw={"width_ratios": [3, 1.3]} if has_sweep else None)
ax = axes[0] if has_sweep else axes

n = len(targets)
width = 0.8 / n
for i, t in enumerate(targets):
    r = doc["ratios"]["to_native"][t["id"]]
    ys = [r.get(w) or 0 for w in workloads]
    xs = [k + (i - (n - 1) / 2) * width for k in range(len(workloads))]
    bars = ax.bar(xs, ys, width, label=t["label"], color=colors.get(t["id"]))
    for b, y in zip(bars, ys):
        ax.annotate(f"{y:.2f}" if y else "n/a", (b.get_x() + b.get_width() / 2, max(y, 0.012)),
                    ha="center", va="bottom", fontsize=6.5, rotation=90, xytext=(0, 2), textcoords="offset points")
ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
ax.text(len(workloads) - 0.5, 1.05, "native = 1", ha="right", va="bottom", fontsize=8)
ax.set_yscale("log")
allv = [v for t in targets for v in doc["ratios"]["to_native"][t["id"]].values() if v]
ax.set_ylim(min([0.01] + allv) * 0.6, 3)
ax.set_xticks(range(len(workloads)))
ax.set_xticklabels([labels.get(w, w) for w in workloads], rotation=25, ha="right")
ax.set_ylabel("speed relative to native (log scale, higher is faster)")
ax.set_title("Workloads: FUSE servers relative to the native directory")
ax.legend(loc="upper left", fontsize=8, ncol=2)
ax.grid(axis="y", which="both", alpha=0.25)

if has_sweep:
    ax2 = axes[1]
    budgets = list(doc["sweep"]["budgets"].keys())
    rs = [doc["sweep"]["budgets"][b] for b in budgets]
    stat = [r["stat_s"] / r["files"] * 1e6 if r.get("files") else 0 for r in rs]
    read = [r["read_s"] / r["files"] * 1e6 if r.get("files") else 0 for r in rs]
    vals = [x + y for x, y in zip(stat, read)]
    ax2.bar(budgets, stat, color="#dd8452", label="stat pass")
    ax2.bar(budgets, read, bottom=stat, color="#f2b48a", label="read pass (reopens)")
    for k, v in enumerate(vals):
        ax2.annotate(f"{v:.0f} µs", (k, v), ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    nat = doc["sweep"]["native"]["us_per_file"]
    ax2.axhline(nat, color="black", linewidth=0.8, linestyle="--")
    ax2.text(-0.4, nat, f"native {nat:.0f} µs", ha="left", va="bottom", fontsize=7)
    ax2.set_title(f"handlefs raw: --fd-budget sweep\nstat + read per file, {doc['sizes']['sweepFiles']:,}-file set")
    ax2.set_xlabel("--fd-budget")
    ax2.set_ylabel("µs per file (lower is better)")
    ax2.set_ylim(0, max(vals) * 1.18 if vals and max(vals) > 0 else 1)
    ax2.legend(fontsize=8, loc="upper center")
    ax2.grid(axis="y", alpha=0.25)

m = doc["machine"]
fig.suptitle(f"handlefs benchmark, {doc['date'][:10]} · {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, {m['fs']}"
             + (" · QUICK sizes" if doc.get("quick") else ""), fontsize=10)
fig.tight_layout()
fig.savefig(out, dpi=110)
