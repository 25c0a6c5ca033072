"""Every figure a run folder supports, drawn from what it stored and written to ``RUN_DIR/figures/``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from decolle_brian.plotting.activity import plot_firing_rates, plot_raster, plot_readout, plot_traces
from decolle_brian.plotting.data import RunData
from decolle_brian.plotting.metrics import plot_confusion, plot_learning_curves, plot_synops
from decolle_brian.plotting.plasticity import plot_three_factors, plot_weight_heatmaps, plot_weight_histograms
from decolle_brian.plotting.style import save


def figure_plan(run: RunData, samples: Sequence[str] | None = None) -> list[tuple[str, Callable]]:
    """``(file name, function returning a Figure)`` for every figure the stored data supports."""
    plan: list[tuple[str, Callable]] = []
    rows, summary = run.metrics, run.summary
    n_classes = len(summary["confusion"][0]) if summary and summary.get("confusion") else None
    if rows:
        loss = run.config.get("learning", {}).get("loss", "local loss")
        plan.append(("learning_curves", lambda: plot_learning_curves(rows, n_classes, f"{loss} loss")))
        if any(key.startswith("synops_L") for row in rows for key in row):
            plan.append(("synops", lambda: plot_synops(rows, summary, dense_operations(run))))
    if summary and summary.get("confusion"):
        plan.append(("confusion", lambda: plot_confusion(summary)))
    if run.recordings is None:
        return plan
    names = list(samples) if samples is not None else run.default_samples()
    for name in names:
        sample = run.sample(name)
        if any(sample.has(f"L{k}/s") for k in sample.layers):
            plan.append((f"raster_{name}", lambda s=sample: plot_raster(s)))
        for k in sample.layers:
            if any(sample.has(f"L{k}/{v}") for v in ("u", "r", "q", "p")):
                plan.append((f"traces_L{k}_{name}", lambda s=sample, k=k: plot_traces(s, k)))
            if sample.has(f"L{k}/syn_dw") and sample.arrays["eta"].any():  # evaluation: nothing is learned
                plan.append((f"three_factors_L{k}_{name}", lambda s=sample, k=k: plot_three_factors(s, k)))
        if any(sample.has(f"L{k}/y") for k in sample.layers):
            plan.append((f"readout_{name}", lambda s=sample: plot_readout(s)))
    weights = run.weights()
    if any(key.endswith(("/W", "/K")) for key in weights):
        plan.append(("weights", lambda: plot_weight_heatmaps(weights)))
    if any(key.endswith("/W_hist") for key in weights):
        plan.append(("weight_histograms", lambda: plot_weight_histograms(weights)))
    test = run.samples("test")
    if test:
        last = max(r["epoch"] for r in test)
        last_samples = [run.sample(r["name"]) for r in test if r["epoch"] == last]
        if any(s.has(f"L{k}/s") for s in last_samples for k in s.layers):
            plan.append(("firing_rates", lambda: plot_firing_rates(last_samples, rows)))
    return plan


def dense_operations(run: RunData) -> list[float] | None:
    """Per layer, steps x neurons x fan-out of one test sample: what a clocked network would compute."""
    summary = run.summary
    test = run.samples("test") if run.recordings is not None else []
    n_steps = test[0]["n_steps"] if test else run.config.get("data", {}).get("params", {}).get("n_steps")
    if not summary or not n_steps or not summary.get("layers") or not summary.get("confusion"):
        return None
    sizes, n_classes = summary["layers"], len(summary["confusion"][0])
    return [float(n_steps * n * ((sizes[k + 1] if k + 1 < len(sizes) else 0) + n_classes))
            for k, n in enumerate(sizes)]


def plot_run(run_dir: str | Path, out: str | Path | None = None, formats: Sequence[str] = ("png",),
             samples: Sequence[str] | None = None, progress: bool = True) -> list[Path]:
    """Draw every figure of a run folder.

    Parameters
    ----------
    run_dir : path
        A run folder (config.toml, metrics.csv, summary.json, recordings.h5).
    out : path, optional
        Figure folder; default ``run_dir/figures``.
    formats : sequence of str
        Any of png, pdf, svg.
    samples : sequence of str, optional
        Recorded sample names (``recordings.h5`` ``index/name``); default the last training sample and the
        first test sample of the last evaluation.

    Returns
    -------
    list of Path
        The files written; ``figures.json`` in the folder lists them with what each shows.
    """
    out = Path(out) if out is not None else Path(run_dir) / "figures"
    written: list[Path] = []
    with RunData(run_dir) as run:
        plan = figure_plan(run, samples)
        for name, draw in tqdm(plan, desc="figures", unit="figure", disable=not progress, leave=False):
            fig = draw()
            written += save(fig, out, name, formats)
            fig.clear()
    (out / "figures.json").write_text(json.dumps([p.name for p in written], indent=1))
    return written
