r"""Plasticity figures: the three factors of the rule at recorded synapses, weight matrices and histograms.

The derived DECOLLE rule is three-factor: the gradient of a weight is
:math:`g_{ij} = bp_i\,\sigma'(U_i)\,P_j` (back-projected error, surrogate derivative, presynaptic trace);
the optimiser turns it into the change :math:`\Delta W_{ij}` (SGD: :math:`-\eta g`; Adamax:
:math:`-\eta g / v`). Everything is drawn from recordings.h5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from decolle_brian.plotting.data import SampleData
from decolle_brian.plotting.style import FACTOR_COLOURS, FULL_WIDTH, new_figure, paper_style

FACTOR_ROWS = (
    ("syn_bp", "bp", "1: error\n$bp_i$"),
    ("syn_sigma", "sigma", "2: surrogate\n$\\sigma'(U_i)$"),
    ("syn_p", "p", "3: presyn. trace\n$P_j$"),
    ("g", "g", "gradient\n$g = bp_i\\,\\sigma'\\,P_j$"),
    ("syn_dw", "dw", "weight change\n$\\Delta W_{ij}$ per step"),
)


def strongest_synapses(sample: SampleData, layer: int, count: int = 3) -> np.ndarray:
    """Positions of up to ``count`` recorded synapses of a layer with the largest total absolute weight change."""
    dw = np.abs(sample.arrays[f"L{layer}/syn_dw"]).sum(axis=0)
    return np.lexsort((np.arange(len(dw)), -dw))[:count]


@paper_style
def plot_three_factors(sample: SampleData, layer: int = 1, synapses: Sequence[int] | None = None) -> Figure:
    """The three factors of the rule, their product and the weight change, at recorded synapses over a sample.

    Parameters
    ----------
    sample : SampleData
        Needs the ``dw`` recording (``L<layer>/syn_*``).
    layer : int
        Dense layer (1-based).
    synapses : sequence of int, optional
        Positions among the layer's recorded synapses; default the (up to) 3 that changed most.
    """
    if not sample.has(f"L{layer}/syn_dw"):
        raise ValueError(f"sample {sample.name} has no synapse factors of layer {layer} (recording variable 'dw')")
    pairs = sample.synapses[layer]
    synapses = strongest_synapses(sample, layer) if synapses is None else np.asarray(synapses)
    t = sample.arrays["t_ms"] * sample.dt_ms
    eta = sample.arrays["eta"]
    sgd = sample.attrs.get("optimizer") == "sgd"
    fig = new_figure(FULL_WIDTH, 6.2)
    axes = fig.subplots(len(FACTOR_ROWS), len(synapses), sharex=True, sharey="row", squeeze=False)
    burnin = int(sample.attrs.get("burnin", 0)) * sample.dt_ms
    for col, s in enumerate(synapses):
        post, pre = (int(v) for v in pairs[s])
        values = {key: sample.arrays[f"L{layer}/{key}"][:, s] for key, _, _ in FACTOR_ROWS if key != "g"}
        values["g"] = values["syn_bp"] * values["syn_sigma"] * values["syn_p"]
        for row, (key, colour, label) in enumerate(FACTOR_ROWS):
            ax = axes[row, col]
            if burnin:
                ax.axvspan(0, burnin, color="0.92", zorder=0, label="burn-in (no learning)" if row == 0 else None)
            ax.plot(t, values[key], color=FACTOR_COLOURS[colour], gid=f"factor-L{layer}-{key}-{s}",
                    label="measured" if key == "syn_dw" else None)
            ax.axhline(0.0, color="k", lw=0.5, ls=":")
            if key == "syn_dw" and sgd:
                ax.plot(t, -eta * values["g"], color="k", ls="--", lw=0.8, gid=f"factor-L{layer}-sgd-{s}",
                        label="$-\\eta\\,g$ (SGD)")
            if col == 0:
                ax.set_ylabel(label)
        pre_name = f"input {pre}" if layer == 1 else f"L{layer - 1} neuron {pre}"
        axes[0, col].set_title(f"synapse $W_{{{post},{pre}}}$:\n{pre_name} $\\to$ L{layer} neuron {post}")
        axes[-1, col].set_xlabel("time in the sample (ms)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    more = axes[-1, 0].get_legend_handles_labels()
    fig.legend(handles + more[0], labels + more[1], loc="outside lower center", ncols=3)
    rule = ("SGD: $\\Delta W = -\\eta\\,g$" if sgd else
            "Adamax: $\\Delta W = -\\eta\\,g / v$, v: running max of $|g|$")
    fig.suptitle(f"Three-factor rule of layer {layer}, {rule} (dimensionless quantities)\n"
                 f"{sample.title()}")
    return fig


def _weight_key(weights: dict, layer: int) -> str | None:
    for key in ("W", "K"):
        if f"L{layer}/{key}" in weights:
            return key
    return None


def _matrix(weights: dict, layer: int, key: str, snap: int) -> np.ndarray:
    a = np.asarray(weights[f"L{layer}/{key}"][snap])
    return a.reshape(a.shape[0], -1) if key == "K" else a


@paper_style
def plot_weight_heatmaps(weights: dict, layers: Sequence[int] | None = None, snapshots: Sequence[int] | None = None,
                         max_columns: int = 256) -> Figure:
    """Weight matrices as heatmaps at chosen snapshots, and their change from the first to the last.

    Parameters
    ----------
    weights : dict
        :meth:`~decolle_brian.recording.RecordingFile.weights` of a run.
    layers : sequence of int, optional
        Default: every layer with stored weights.
    snapshots : sequence of int, optional
        Snapshot positions; default the first, the middle and the last.
    max_columns : int
        Wider matrices show their first ``max_columns`` columns (presynaptic neurons).
    """
    seen = np.asarray(weights.get("samples_seen", []))
    layers = [k for k in (layers or range(1, 64)) if _weight_key(weights, k)]
    if not layers or not len(seen):
        raise ValueError("no weight snapshots stored (recording variable 'W')")
    if snapshots is None:
        snapshots = sorted({0, (len(seen) - 1) // 2, len(seen) - 1})
    snapshots = list(snapshots)
    n_cols = len(snapshots) + (len(snapshots) > 1)
    fig = new_figure(FULL_WIDTH, 0.6 + 1.9 * len(layers))
    axes = fig.subplots(len(layers), n_cols, squeeze=False)
    for row, k in enumerate(layers):
        key = _weight_key(weights, k)
        mats = [_matrix(weights, k, key, s)[:, :max_columns] for s in snapshots]
        vmax = max(float(np.abs(m).max()) for m in mats) or 1.0
        for col, (s, m) in enumerate(zip(snapshots, mats, strict=True)):
            ax = axes[row, col]
            image = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto", gid=f"weights-L{k}-{s}")
            _integer_ticks(ax)
            ax.set_title(f"{key}$_{k}$ after {int(seen[s])} samples")
            if col == 0:
                subset = f"L{k}/W_rows" in weights
                ax.set_ylabel(("recorded neuron" if subset else "neuron") + f" of layer {k}"
                              if key == "W" else f"output channel of layer {k}")
            ax.set_xlabel(_pre_label(weights, k, key))
        fig.colorbar(image, ax=axes[row, :len(snapshots)], label=f"{key}$_{k}$ (dimensionless)", shrink=0.9)
        if len(snapshots) > 1:
            change = mats[-1] - mats[0]
            lim = float(np.abs(change).max()) or 1.0
            ax = axes[row, -1]
            image = ax.imshow(change, cmap="PuOr_r", vmin=-lim, vmax=lim, aspect="auto", gid=f"weights-L{k}-change")
            _integer_ticks(ax)
            ax.set_title(f"change over {int(seen[snapshots[-1]] - seen[snapshots[0]])} samples")
            ax.set_xlabel(_pre_label(weights, k, key))
            fig.colorbar(image, ax=ax, label=f"$\\Delta${key}$_{k}$ (dimensionless)", shrink=0.9)
    fig.suptitle("Weights at chosen snapshots (" + ("forward weights W[post, pre]" if "K" not in
                 "".join(weights) else "weights and conv kernels") + ") and their change")
    return fig


def _integer_ticks(ax) -> None:
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=5, integer=True))


def _pre_label(weights: dict, layer: int, key: str) -> str:
    if key == "K":
        return "kernel element (in channel, row, col)"
    pre = "input neuron" if layer == 1 else f"neuron of L{layer - 1}"
    return ("recorded " if f"L{layer}/W_cols" in weights else "") + pre


def histogram_density(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of a histogram as a probability density (integral 1)."""
    counts = np.asarray(counts, dtype=float)
    return counts / (counts.sum() * np.diff(edges)) if counts.sum() else counts


@paper_style
def plot_weight_histograms(weights: dict, layers: Sequence[int] | None = None) -> Figure:
    """Histograms of every weight of each layer at every snapshot, coloured by training progress."""
    seen = np.asarray(weights.get("samples_seen", []))
    layers = [k for k in (layers or range(1, 64)) if f"L{k}/W_hist" in weights]
    if not layers or not len(seen):
        raise ValueError("no weight histograms stored (recording variable 'W')")
    fig = new_figure(FULL_WIDTH, 2.5)
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    norm = Normalize(vmin=float(seen.min()), vmax=float(max(seen.max(), seen.min() + 1)))
    from matplotlib import colormaps  # noqa: PLC0415

    cmap = colormaps["viridis"]
    for ax, k in zip(axes, layers, strict=True):
        counts, edges = weights[f"L{k}/W_hist"], weights[f"L{k}/W_hist_edges"]
        for s in range(len(seen)):
            # each snapshot has its own bins: densities, not counts, are comparable
            ax.stairs(histogram_density(counts[s], edges[s]), edges[s], color=cmap(norm(seen[s])), lw=0.9,
                      gid=f"whist-L{k}-{s}")
        ax.set_title(f"layer {k}: all {int(counts[0].sum())} weights, {len(seen)} snapshots")
        ax.set_xlabel("weight (dimensionless)")
        if ax is axes[0]:
            ax.set_ylabel("probability density (per unit weight)")
    from matplotlib.cm import ScalarMappable  # noqa: PLC0415

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), label="training samples learned")
    return fig
