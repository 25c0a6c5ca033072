"""Compare runs that differ in the surrogate gradient sigma'(U) (e.g. a sweep over learning.surrogate).

Usage::

    python analysis/compare_surrogates.py RUN_DIR [RUN_DIR ...] [--out DIR] [--format png,pdf]

Draws, from what each run stored:
a) every run's surrogate sigma'(u) (derived again from its config.toml: name and parameters),
b) the final test accuracy of every layer per run,
c) the test accuracy of the last layer over the epochs,
d) when the runs recorded ``u`` during training: the distribution of the membrane potentials U the rule saw
   in learning steps, with the surrogate's mean value over them (how much gradient gets through).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from decolle_brian.derivation import derive  # noqa: E402
from decolle_brian.plotting import RunData, save  # noqa: E402
from decolle_brian.plotting.style import FULL_WIDTH, new_figure, paper_style, parse_formats  # noqa: E402
from decolle_brian.recording import surrogate_function  # noqa: E402


def surrogate_label(run: RunData) -> str:
    learning = run.config["learning"]
    params = ", ".join(f"{k}={v:g}" for k, v in sorted(learning.get("surrogate_params", {}).items()))
    return f"{learning['surrogate']}" + (f" ({params})" if params else "")


def sigma_of(run: RunData):
    learning = run.config["learning"]
    return surrogate_function(derive(learning["loss"], learning["surrogate"],
                                     **learning.get("surrogate_params", {})).surrogate)


def learning_potentials(run: RunData) -> np.ndarray | None:
    """U of every recorded neuron in the learning steps of the recorded training samples (all layers)."""
    if run.recordings is None:
        return None
    values = []
    for row in run.samples("train"):
        sample = run.sample(row["name"])
        learning = sample.arrays["eta"] > 0
        values += [sample.arrays[f"L{k}/u"][learning].ravel() for k in sample.layers if sample.has(f"L{k}/u")]
    return np.concatenate(values) if values else None


@paper_style
def plot_comparison(runs: list[RunData]):
    potentials = [learning_potentials(run) for run in runs]
    with_u = any(p is not None and p.size for p in potentials)
    fig = new_figure(FULL_WIDTH, 2.5 * (1 + with_u))
    if with_u:
        (ax_sur, ax_acc), (ax_u, ax_epochs) = fig.subplots(2, 2)
    else:
        ax_sur, ax_acc, ax_epochs = fig.subplots(1, 3)
    u = np.linspace(-2, 2, 801)
    for r, run in enumerate(runs):
        ax_sur.plot(u, sigma_of(run)(u), color=f"C{r}", label=surrogate_label(run), gid=f"surrogate-{r}")
    ax_sur.set_xlabel("membrane potential U (dimensionless; threshold 0)")
    ax_sur.set_ylabel("$\\sigma'(U)$ (dimensionless)")
    ax_sur.set_title("surrogate derivative of the spike")
    ax_sur.legend(loc="upper right", fontsize=6.5)
    n_layers = max(len(run.summary["test_accuracy"]) for run in runs)
    width = 0.8 / len(runs)
    for r, run in enumerate(runs):
        accuracy = 100 * np.asarray(run.summary["test_accuracy"])
        ax_acc.bar(np.arange(1, len(accuracy) + 1) + (r - (len(runs) - 1) / 2) * width, accuracy, width,
                   color=f"C{r}", label=surrogate_label(run), gid=f"accuracy-{r}")
    ax_acc.axhline(100 / len(runs[0].summary["confusion"][0]), color="0.5", ls=":", lw=0.8, label="chance")
    ax_acc.set_xticks(range(1, n_layers + 1), [f"layer {k}" for k in range(1, n_layers + 1)])
    ax_acc.set_ylim(0, 100)
    ax_acc.set_ylabel("final test accuracy (%)")
    ax_acc.set_title("accuracy per layer")
    if with_u:
        lo, hi = -3, 1.5
        bins = np.linspace(lo, hi, 91)
        for r, (run, values) in enumerate(zip(runs, potentials, strict=True)):
            if values is None or not values.size:
                continue
            ax_u.hist(np.clip(values, lo, hi), bins=bins, density=True, histtype="step", color=f"C{r}",
                      label=f"{surrogate_label(run)}: mean $\\sigma'$ = {sigma_of(run)(values).mean():.3f}",
                      gid=f"potentials-{r}")
        ax_u.set_xlabel("U in learning steps (clipped to the axis)")
        ax_u.set_ylabel("probability density")
        ax_u.set_title("membrane potentials the rule saw")
        ax_u.legend(loc="upper left", fontsize=6.5)
    for r, run in enumerate(runs):
        test = [row for row in run.metrics if row["split"] == "test"]
        last = len(run.summary["test_accuracy"])
        ax_epochs.plot([row["epoch"] for row in test], [100 * row[f"acc_L{last}"] for row in test], marker="o",
                       ms=3, color=f"C{r}", label=surrogate_label(run), gid=f"epochs-{r}")
    ax_epochs.set_xlabel("epoch")
    ax_epochs.set_ylabel("test accuracy, last layer (%)")
    ax_epochs.set_ylim(0, 100)
    ax_epochs.xaxis.get_major_locator().set_params(integer=True)
    ax_epochs.set_title("over training")
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
    if len({surrogate_label(run) for run in runs}) < len(runs):
        print("note: some runs share a surrogate; they are drawn separately")
    out = Path(args.out) if args.out else runs[0].run_dir / "figures" / "analysis"
    written = save(plot_comparison(runs), out, "compare_surrogates", formats)
    table = [{"run": str(run.run_dir), "surrogate": surrogate_label(run), "test_accuracy": run.summary["test_accuracy"]}
             for run in runs]
    (out / "compare_surrogates.json").write_text(json.dumps(table, indent=1))
    for row in table:
        print(f"{row['surrogate']:>28}: " + " ".join(f"L{k + 1} {100 * a:5.1f}%"
                                                   for k, a in enumerate(row["test_accuracy"])))
    for run in runs:
        run.close()
    print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
