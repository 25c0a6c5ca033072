"""Sweep figures from ``sweep.csv``: metric vs each swept parameter with the seed spread, heatmaps of 2-D grids.

* ``<metric>_vs_<key>``: one panel per layer; every seed as a dot, mean +- std over seeds as a line with
  error bars, one line per combination of the other swept values (averaged over them when there are many).
  Sweeps with random axes show every point as a dot instead (no two points share values).
* ``heatmap_<metric>_<key1>_x_<key2>``: for each pair of grid keys, the mean over seeds (and over the
  other keys) per cell, annotated with mean and std; one panel per layer.

Decay factors (``neuron.alpha``, ``beta``, ``alpharp``) are labelled with their time constants,
``tau = -dt / ln(factor)``, dt = 1 ms. ``decolle-brian plot SWEEP_DIR`` draws them (see :func:`plot_command`).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from decolle_brian.store import writing
from decolle_brian.sweep.folder import (  # noqa: F401 - is_sweep_dir: the old import path
    FIGURES,
    METRICS,
    is_sweep_dir,
    read_sweep_csv,
    read_sweep_json,
)

DECAYS = {"neuron.alpha": "tau_mem", "neuron.beta": "tau_syn", "neuron.alpharp": "tau_ref"}
MAX_LINES = 8


def plot_command(args) -> int:
    """``decolle-brian plot SWEEP_DIR [--format png,pdf] [--out DIR]``: draw the sweep figures.

    The parser's default format (``png``, or none) gives PNG + PDF, as a sweep itself writes them.
    Returns the exit status (2: an unknown format).
    """
    from decolle_brian.plotting.style import parse_formats  # noqa: PLC0415 - the run figures' format check

    text = getattr(args, "format", None) or "png"
    try:
        formats = ("png", "pdf") if text == "png" else parse_formats(text)
    except ValueError as exc:
        print(f"decolle-brian plot: {exc}", file=sys.stderr)
        return 2
    paths = plot_sweep(args.path, out=args.out, formats=formats)
    print(f"{len(paths)} sweep figure files written to {paths[0].parent if paths else '-'}")
    for path in paths:
        print(f"  {path.name}")
    return 0


def plot_sweep(sweep_dir: str | Path, out: str | Path | None = None, formats=("png", "pdf"),
               metric: str | None = None) -> list[Path]:
    """Draw the figures of a sweep folder; return the files written.

    Parameters
    ----------
    sweep_dir : path
    out : path, optional
        Figure folder (default ``<sweep_dir>/figures``).
    formats : tuple of str
        File formats, e.g. ``("png", "pdf")``.
    metric : {"acc", "loss", "rate_hz"}, optional
        Default: the sweep's ``metric``.
    """
    sweep_dir = Path(sweep_dir)
    stored = read_sweep_json(sweep_dir)["spec"]
    metric = metric or stored["metric"]
    out = Path(out) if out else sweep_dir / FIGURES
    out.mkdir(parents=True, exist_ok=True)
    rows = read_sweep_csv(sweep_dir)
    done = [r for r in rows if r["status"] == "done"]
    layers = sorted({int(k.rsplit("_L", 1)[1]) for r in done for k in r if k.startswith(f"{metric}_L")
                     and r[k] is not None})
    if not done or not layers:
        return []
    axes = [a for a in stored["axes"] if a["key"] != "seed"]
    keys = [a["key"] for a in axes]
    kinds = {a["key"]: a["kind"] for a in axes}
    title = f"{stored['name']}: {METRICS[metric]} ({len(done)} points{_failed(rows)})"
    written: list[Path] = []
    for key in keys:
        fig = _metric_vs(done, key, [k for k in keys if k != key], layers, metric, scatter="random" in kinds.values())
        fig.suptitle(title, fontsize=10)
        written += _save(fig, out / f"{metric}_vs_{_slug(key)}", formats)
    grid_keys = [k for k in keys if kinds[k] == "grid"]
    for k1, k2 in list(combinations(grid_keys, 2))[:6]:
        fig = _heatmap(done, k1, k2, layers, metric)
        fig.suptitle(title, fontsize=10)
        written += _save(fig, out / f"heatmap_{metric}_{_slug(k1)}_x_{_slug(k2)}", formats)
    if not keys:  # seeds only: the spread per layer
        fig = _seed_spread(done, layers, metric)
        fig.suptitle(title, fontsize=10)
        written += _save(fig, out / f"{metric}_over_seeds", formats)
    return written


# ---- figures -------------------------------------------------------------------------------------------------
def _metric_vs(rows, key, others, layers, metric, scatter: bool) -> Figure:
    fig, panels = _panels(len(layers))
    xs = _ordered({_hashable(r[key]) for r in rows}, rows, key)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs)
    position = {v: (float(v) if numeric else i) for i, v in enumerate(xs)}
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(_hashable(r[k]) for k in others)].append(r)
    if scatter or len(groups) > MAX_LINES:
        groups = {(): rows} if not scatter else groups
    for ax, layer in zip(panels, layers, strict=True):
        column = f"{metric}_L{layer}"
        if scatter:
            vals = [(position[_hashable(r[key])], r[column]) for r in rows if r.get(column) is not None]
            ax.scatter(*zip(*vals, strict=True), s=18, alpha=0.7)
        else:
            for index, (group, members) in enumerate(sorted(groups.items(), key=lambda g: _sort_key(g[0]))):
                color = f"C{index % 10}"
                by_x = defaultdict(list)
                for r in members:
                    if r.get(column) is not None:
                        by_x[_hashable(r[key])].append(r[column])
                x = [position[v] for v in xs if v in by_x]
                mean = [float(np.mean(by_x[v])) for v in xs if v in by_x]
                std = [float(np.std(by_x[v])) for v in xs if v in by_x]
                n_seeds = max(len(by_x[v]) for v in by_x) if by_x else 0
                for v in by_x:
                    ax.scatter([position[v]] * len(by_x[v]), by_x[v], s=10, alpha=0.35, color=color)
                label = ", ".join(f"{_short(k)}={_fmt(v)}" for k, v in zip(others, group, strict=True)) or "mean"
                ax.errorbar(x, mean, yerr=std, color=color, marker="o", ms=4, capsize=3,
                            label=f"{label} (± std, {n_seeds} seed{'s' if n_seeds != 1 else ''})")
            ax.legend(fontsize=7)
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_ylabel(METRICS[metric])
        ax.set_xlabel(_axis_label(key))
        if numeric and min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        if not numeric or len(xs) <= 8:  # label the swept values themselves
            ax.minorticks_off()
            ax.set_xticks([position[v] for v in xs], [_tick(key, v) for v in xs], fontsize=7)
        ax.grid(alpha=0.3)
    return fig


def _heatmap(rows, k1, k2, layers, metric) -> Figure:
    fig, panels = _panels(len(layers))
    cols = _ordered({_hashable(r[k1]) for r in rows}, rows, k1)
    lines = _ordered({_hashable(r[k2]) for r in rows}, rows, k2)
    for ax, layer in zip(panels, layers, strict=True):
        column = f"{metric}_L{layer}"
        cells = defaultdict(list)
        for r in rows:
            if r.get(column) is not None:
                cells[(_hashable(r[k2]), _hashable(r[k1]))].append(r[column])
        mean = np.full((len(lines), len(cols)), np.nan)
        std = np.full_like(mean, np.nan)
        for (i, b), (j, a) in ((ib, ja) for ib in enumerate(lines) for ja in enumerate(cols)):
            if (b, a) in cells:
                mean[i, j], std[i, j] = np.mean(cells[(b, a)]), np.std(cells[(b, a)])
        image = ax.imshow(mean, origin="lower", aspect="auto", cmap="viridis" if metric != "loss" else "viridis_r")
        fig.colorbar(image, ax=ax, shrink=0.85, label=METRICS[metric])
        for i in range(len(lines)):
            for j in range(len(cols)):
                if not np.isnan(mean[i, j]):
                    bright = (mean[i, j] - np.nanmin(mean)) > 0.6 * (np.nanmax(mean) - np.nanmin(mean) + 1e-12)
                    ax.text(j, i, _mean_std(mean[i, j], std[i, j]), ha="center", va="center", fontsize=7,
                            color="black" if bright else "white")
        ax.set_xticks(range(len(cols)), [_tick(k1, v) for v in cols], fontsize=7)
        ax.set_yticks(range(len(lines)), [_tick(k2, v) for v in lines], fontsize=7)
        ax.set_xlabel(_axis_label(k1))
        ax.set_ylabel(_axis_label(k2))
        ax.set_title(f"layer {layer}: mean over seeds", fontsize=9)
    return fig


def _seed_spread(rows, layers, metric) -> Figure:
    fig, panels = _panels(1)
    ax = panels[0]
    for index, layer in enumerate(layers):
        values = [r[f"{metric}_L{layer}"] for r in rows if r.get(f"{metric}_L{layer}") is not None]
        ax.scatter([index] * len(values), values, alpha=0.5)
        ax.errorbar([index], [np.mean(values)], yerr=[np.std(values)], color="black", capsize=4, marker="_")
    ax.set_xticks(range(len(layers)), [f"layer {k}" for k in layers])
    ax.set_ylabel(METRICS[metric])
    return fig


# ---- helpers -------------------------------------------------------------------------------------------------
def _panels(n: int):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def _save(fig: Figure, stem: Path, formats) -> list[Path]:
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        with writing(path):
            fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


def _hashable(value):
    return json.dumps(value) if isinstance(value, list | dict) else value


def _ordered(values: set, rows, key) -> list:
    """Swept values in numeric order, or else in the order the sweep visited them."""
    values = list(values)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return sorted(values)
    first = {}
    for index, r in enumerate(rows):
        first.setdefault(_hashable(r[key]), index)
    return sorted(values, key=lambda v: first[v])


def _sort_key(group: tuple):
    return tuple((0, v, "") if isinstance(v, int | float) else (1, 0, str(v)) for v in group)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _mean_std(mean: float, std: float) -> str:
    """Mean and std with the same decimals, three significant digits of the mean."""
    decimals = max(0, 2 - math.floor(math.log10(abs(mean)))) if mean else 3
    return f"{mean:.{decimals}f}\n±{std:.{decimals}f}"


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _tau(value: float) -> float:
    return -1.0 / math.log(value) if 0 < value < 1 else float("nan")


def _tick(key: str, value) -> str:
    if key in DECAYS and isinstance(value, int | float):
        return f"{value:g}\n({_tau(value):.3g} ms)"
    return _fmt(value)


def _axis_label(key: str) -> str:
    return f"{key} ({DECAYS[key]})" if key in DECAYS else key


def _failed(rows) -> str:
    failed = sum(r["status"] == "failed" for r in rows)
    return f", {failed} failed" if failed else ""


def _slug(key: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in key)
