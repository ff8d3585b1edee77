"""One plot and one table of LFW-dev 5-fold accuracy against training wall time for the
training runs whose histories are in benchmarks/results/train_<name>_history.json
(written by `edgeface train`, copied from OUT/history.json).

    PYTHONPATH=. python benchmarks/train_compare.py default mobilenet0.5-multibatch ...
    PYTHONPATH=. python benchmarks/train_compare.py default mfn-dlibresnet-views-rel --x faces --out train_compare_faces

--x faces puts faces seen on the x axis (identity-batch + teacher-only faces per step, summed over
the steps), which compares runs at equal data independently of how busy the machine was.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+")
    ap.add_argument("--out", default="train_compare")
    ap.add_argument("--x", choices=["minutes", "faces"], default="minutes", help="x axis: wall minutes (default) or faces seen")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeface.models import build_from_card, get
    from edgeface.models.complexity import count_mflops, count_params

    fig, ax = plt.subplots(figsize=(7, 4.2))
    lines = ["| run | arch | params | MFLOPs | losses | teacher | budget s | steps | faces seen | LFW-dev untrained → final |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in args.names:
        data = json.loads((RESULTS / f"train_{name}_history.json").read_text())
        cfg, hist = data["config"], data["history"]
        t = [0.0] + [e["seconds"] for e in hist[1:]]
        acc = [100 * e["lfw_accuracy"] for e in hist]
        steps = sum(e.get("steps") or 0 for e in hist)
        per_step = cfg["p"] * cfg["k"] + (cfg.get("distill_extra") or 0)
        if args.x == "faces":
            seen, total = [], 0
            for e in hist:
                total += (e.get("steps") or 0) * per_step
                seen.append(total / 1000)
            ax.plot(seen, acc, marker="o", label=name)
        else:
            ax.plot([x / 60 for x in t], acc, marker="o", label=name)
        card = get(cfg["arch"]).card
        net = build_from_card(card)
        lines.append(f"| {name} | {cfg['arch']} | {count_params(net) / 1e6:.2f} M | {count_mflops(net, card.input_size):.0f} | {'+'.join(cfg['losses'])} | "
                     f"{cfg.get('teacher') or '–'} | {cfg.get('time_budget_s') or '–'} | {steps} | {steps * per_step:,} | {acc[0]:.1f} → **{acc[-1]:.1f} %** |")
    ax.set_xlabel("faces seen (thousands)" if args.x == "faces" else "training wall time (min, 2-core CPU)")
    ax.set_ylabel("LFW-dev 5-fold accuracy (%)")
    ax.axhline(50, color="grey", lw=0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.out}.png", dpi=110)
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
