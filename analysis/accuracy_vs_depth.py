"""Accuracy and cost against depth: what each deeper local layer adds, in one run or across runs.

Usage::

    python analysis/accuracy_vs_depth.py RUN_DIR [RUN_DIR ...] [--out DIR] [--format png,pdf]

Every layer of a DECOLLE network has its own readout, so one run gives an accuracy per depth. Draws
a) the final test accuracy of each layer's readout against its depth (one line per run, chance marked),
b) the test accuracy of every layer over the epochs of the first run,
c) the synaptic operations per inference of each layer (the cost of going deeper),
from summary.json and metrics.csv only. Prints the numbers as a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from decolle_brian.plotting import RunData, save  # noqa: E402
from decolle_brian.plotting.style import FULL_WIDTH, layer_colour, new_figure, paper_style, parse_formats  # noqa: E402


def run_label(run: RunData) -> str:
    layers = run.summary.get("layers") if run.summary else None
    return f"{run.config.get('name', run.run_dir.name)} {layers or ''} ({run.run_dir.name})"


@paper_style
def plot_depth(runs: list[RunData]):
    fig = new_figure(FULL_WIDTH, 2.5)
    ax_depth, ax_epochs, ax_cost = fig.subplots(1, 3)
    n_classes = None
    for r, run in enumerate(runs):
        summary = run.summary
        accuracy = 100 * np.asarray(summary["test_accuracy"])
        depth = np.arange(1, len(accuracy) + 1)
        ax_depth.plot(depth, accuracy, marker="o", ms=4, color=f"C{r}", label=run_label(run), gid=f"depth-{r}")
        ax_cost.plot(depth, summary["synops_per_sample"], marker="s", ms=4, color=f"C{r}", gid=f"cost-{r}")
        n_classes = len(summary["confusion"][0])
    first = runs[0]
    test = [row for row in first.metrics if row["split"] == "test"]
    for k in range(1, len(first.summary["test_accuracy"]) + 1):
        ax_epochs.plot([row["epoch"] for row in test], [100 * row[f"acc_L{k}"] for row in test], marker="o", ms=3,
                       color=layer_colour(k), label=f"layer {k}", gid=f"epochs-L{k}")
    for ax in (ax_depth, ax_epochs):
        ax.axhline(100 / n_classes, color="0.5", ls=":", lw=0.8, label="chance")
        ax.set_ylim(0, 100)
        ax.set_ylabel("test accuracy (%)")
    ax_depth.set_xlabel("layer (depth of the local readout)")
    ax_depth.set_title("accuracy per depth")
    ax_epochs.set_xlabel("epoch")
    ax_epochs.set_title("over training" + (" (first run)" if len(runs) > 1 else ""))
    ax_cost.set_xlabel("layer")
    ax_cost.set_ylabel("synaptic ops per inference")
    ax_cost.set_title("cost per layer")
    for ax in (ax_depth, ax_epochs, ax_cost):
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_epochs.legend(loc="best", fontsize=6.5)
    if len(runs) > 1:
        fig.legend(*ax_depth.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return fig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--out", help="figure folder (default FIRST_RUN/figures/analysis)")
    parser.add_argument("--format", default="png")
    args = parser.parse_args(argv)
    formats = parse_formats(args.format)
    runs = [RunData(path) for path in args.run_dirs]
    missing = [str(run.run_dir) for run in runs if run.summary is None]
    if missing:
        raise SystemExit(f"no summary.json (unfinished runs?): {missing}")
    out = Path(args.out) if args.out else runs[0].run_dir / "figures" / "analysis"
    written = save(plot_depth(runs), out, "accuracy_vs_depth", formats)
    for run in runs:
        accuracy = " ".join(f"L{k + 1} {100 * a:5.1f}%" for k, a in enumerate(run.summary["test_accuracy"]))
        print(f"{run_label(run)}: {accuracy}")
        run.close()
    print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
