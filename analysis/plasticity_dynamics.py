"""Plasticity dynamics of one layer during learning: the three factors of the rule and the weight change.

Usage::

    python analysis/plasticity_dynamics.py RUN_DIR [--layer 1] [--synapse K] [--out DIR] [--format png,pdf]

Needs a run recorded with ``variables`` including ``dw`` and ``train_every > 0``. Draws, for the layer's
recorded synapses over the recorded training samples:

a) the factors (error bp, surrogate sigma'(U), presynaptic trace P), their product and the weight change of
   one synapse in the first and the last recorded training sample (early and late in learning);
b) the mean magnitude of each factor and of the weight change per recorded sample, against training progress;
c) which factor gates learning: the fraction of learning steps in which each factor is (nearly) zero, so
   that no weight changes whatever the others do.

Prints the same numbers as a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from decolle_brian.plotting import RunData, plot_three_factors, save  # noqa: E402
from decolle_brian.plotting.style import FACTOR_COLOURS, FULL_WIDTH, new_figure, paper_style, parse_formats  # noqa: E402

FACTORS = (("syn_bp", "bp", "|bp| (error)"), ("syn_sigma", "sigma", "$\\sigma'(U)$ (surrogate)"),
           ("syn_p", "p", "P (presyn. trace)"), ("syn_dw", "dw", "|$\\Delta W$| per step"))
#: a factor below this is "zero" for the gating statistics
ZERO = {"syn_bp": 1e-9, "syn_sigma": 1e-3, "syn_p": 1e-4}


def factor_statistics(run: RunData, layer: int) -> list[dict]:
    """Per recorded training sample: samples learned before it, and mean |factor| over its learning steps."""
    rows = []
    for row in run.samples("train"):
        sample = run.sample(row["name"])
        if not sample.has(f"L{layer}/syn_dw"):
            raise SystemExit(f"{run.run_dir}: layer {layer} has no recorded synapses (recording variable 'dw')")
        learning = sample.arrays["eta"] > 0
        stats = {"samples_seen": row["samples_seen"], "name": row["name"]}
        for key, _, _ in FACTORS:
            values = np.abs(sample.arrays[f"L{layer}/{key}"][learning])
            stats[key] = float(values.mean()) if values.size else 0.0
        for key, limit in ZERO.items():
            values = np.abs(sample.arrays[f"L{layer}/{key}"][learning])
            stats[f"zero_{key}"] = float(np.mean(values < limit)) if values.size else 0.0
        rows.append(stats)
    if not rows:
        raise SystemExit(f"{run.run_dir}: no recorded training samples (set recording.train_every > 0)")
    return rows


@paper_style
def plot_factor_evolution(stats: list[dict], layer: int):
    """Mean factor magnitudes against training progress, and the gating fractions."""
    fig = new_figure(FULL_WIDTH, 2.6)
    ax_mean, ax_gate = fig.subplots(1, 2)
    seen = [s["samples_seen"] for s in stats]
    for key, colour, label in FACTORS:
        values = np.array([s[key] for s in stats])
        # log axis: a sample without any change (0) is left out rather than drawn at -infinity
        ax_mean.plot(seen, np.where(values > 0, values, np.nan), marker="o", ms=3, color=FACTOR_COLOURS[colour],
                     label=label, gid=f"mean-{key}")
    ax_mean.set_yscale("log")
    ax_mean.set_xlabel("training samples learned")
    ax_mean.set_ylabel("mean magnitude over learning steps\n(dimensionless)")
    ax_mean.set_title(f"layer {layer}: factors during learning")
    fig.legend(*ax_mean.get_legend_handles_labels(), loc="outside lower center", ncols=4)
    names = {"syn_bp": "bp = 0", "syn_sigma": "$\\sigma'$ < 1e-3", "syn_p": "P < 1e-4"}
    fractions = [100 * np.mean([s[f"zero_{key}"] for s in stats]) for key in ZERO]
    colours = [FACTOR_COLOURS[c] for _, c, _ in FACTORS[:3]]
    bars = ax_gate.bar(range(3), fractions, color=colours, gid="gating")
    for bar, value in zip(bars, fractions, strict=True):
        ax_gate.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.0f} %", ha="center", va="bottom",
                     fontsize=6.5)
    ax_gate.set_xticks(range(3), [names[k] for k in ZERO])
    ax_gate.set_ylim(0, 105)
    ax_gate.set_ylabel("learning steps (%)")
    ax_gate.set_title("steps in which a factor blocks the change")
    return fig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--layer", type=int, default=1, help="dense layer (1-based)")
    parser.add_argument("--synapse", type=int, help="recorded synapse position (default: the one that changed most)")
    parser.add_argument("--out", help="figure folder (default RUN_DIR/figures/analysis)")
    parser.add_argument("--format", default="png")
    args = parser.parse_args(argv)
    formats = parse_formats(args.format)
    out = Path(args.out) if args.out else Path(args.run_dir) / "figures" / "analysis"
    with RunData(args.run_dir) as run:
        stats = factor_statistics(run, args.layer)
        written = save(plot_factor_evolution(stats, args.layer), out, f"plasticity_dynamics_L{args.layer}", formats)
        first, last = run.sample(stats[0]["name"]), run.sample(stats[-1]["name"])
        synapse = [args.synapse] if args.synapse is not None else None
        if synapse is None:  # one synapse followed through training: the one that changed most over all samples
            total = sum(np.abs(run.sample(s["name"]).arrays[f"L{args.layer}/syn_dw"]).sum(axis=0) for s in stats)
            synapse = [int(np.argmax(total))]
        for tag, sample in (("early", first), ("late", last)):
            written += save(plot_three_factors(sample, args.layer, synapse), out,
                            f"three_factors_L{args.layer}_{tag}", formats)
    print(f"layer {args.layer}: mean magnitude over learning steps per recorded training sample")
    print(f"{'samples':>8} " + " ".join(f"{k:>10}" for k, _, _ in FACTORS) + "  zero bp / sigma' / P")
    for s in stats:
        print(f"{s['samples_seen']:>8} " + " ".join(f"{s[k]:10.3g}" for k, _, _ in FACTORS)
              + "  " + " / ".join(f"{100 * s[f'zero_{k}']:.0f}%" for k in ZERO))
    print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
