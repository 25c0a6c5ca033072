"""Activity figures of recorded samples: spike rasters, neuron traces, readouts, firing-rate distributions.

Artists that carry stored data have a ``gid`` (e.g. ``raster-L1``, ``trace-L1-u-7``), so tests and users can
read the plotted values back from a figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from decolle_brian.plotting.data import SampleData
from decolle_brian.plotting.style import FULL_WIDTH, layer_colour, new_figure, paper_style

TRACE_LABELS = {"u": "U", "r": "R", "q": "Q", "p": "P"}
TRACE_NAMES = {"u": "potential", "r": "refractory", "q": "synaptic", "p": "membrane"}  # short: fits a panel


def _burnin(ax, sample: SampleData, label: bool = False) -> None:
    burnin = int(sample.attrs.get("burnin", 0))
    if burnin:
        ax.axvspan(0, burnin * sample.dt_ms, color="0.92", zorder=0, label="burn-in" if label else None)


@paper_style
def plot_raster(sample: SampleData, max_inputs: int | None = None) -> Figure:
    """Input events and the spikes of every neuron of each recorded layer over one sample.

    Parameters
    ----------
    sample : SampleData
        Needs ``input`` and ``L<k>/s`` (recording variable ``s``).
    max_inputs : int, optional
        Show only the first input neurons (large inputs), default all.
    """
    layers = [k for k in sample.layers if sample.has(f"L{k}/s")]
    if not layers:
        raise ValueError(f"sample {sample.name} has no recorded spikes (recording variable 's')")
    counts = sample.arrays["input"]
    if max_inputs is not None:
        counts = counts[:, :max_inputs]
    heights = [1.4] + [1.0] * len(layers)
    fig = new_figure(FULL_WIDTH, 0.9 + 1.1 * sum(heights))
    axes = fig.subplots(len(heights), 1, sharex=True, height_ratios=heights)
    n_steps = counts.shape[0]
    from decolle_brian.data.plot import plot_sample  # noqa: PLC0415 - the data package loads tonic and scipy

    plot_sample(counts, ax=axes[0], kind="raster", dt_ms=sample.dt_ms, title="")
    for coll in axes[0].collections:
        coll.set_gid("raster-input")
    axes[0].set_ylabel("input neuron")
    axes[0].set_xlabel("")
    axes[0].set_title(f"input: {int(counts.sum())} events", loc="left")
    for ax, k in zip(axes[1:], layers, strict=True):
        spikes = sample.arrays[f"L{k}/s"]
        t, i = np.nonzero(spikes)
        ax.scatter(t * sample.dt_ms, i, marker="|", s=12, linewidths=0.8, color=layer_colour(k), gid=f"raster-L{k}")
        n = spikes.shape[1]
        rate = 1000.0 * spikes.sum() / (n * n_steps * sample.dt_ms)
        ax.set_title(f"layer {k}: {int(spikes.sum())} spikes, {rate:.1f} Hz per neuron", loc="left")
        ax.set_ylim(-0.5, n - 0.5)
        ax.set_ylabel("neuron")
    for ax in axes:
        _burnin(ax, sample, label=ax is axes[-1])
        ax.set_xlim(0, n_steps * sample.dt_ms)
    axes[-1].set_xlabel("time in the sample (ms)")
    if int(sample.attrs.get("burnin", 0)):
        axes[-1].legend(loc="upper right", fontsize=6.5)
    fig.suptitle(sample.title())
    return fig


def most_active(sample: SampleData, layer: int, count: int = 3) -> np.ndarray:
    """Up to ``count`` recorded neurons of a layer, most spikes in the sample first (ties: lower index)."""
    recorded = sample.neurons[layer]
    if sample.has(f"L{layer}/s"):
        spikes = sample.arrays[f"L{layer}/s"][:, recorded].sum(axis=0).astype(np.int64)  # uint8: no negation
        order = np.lexsort((recorded, -spikes))
    else:
        order = np.arange(len(recorded))
    return recorded[order[:count]]


@paper_style
def plot_traces(sample: SampleData, layer: int = 1, neurons: Sequence[int] | None = None) -> Figure:
    """U, R, Q, P of chosen neurons over one sample, with their spikes and the threshold marked.

    Parameters
    ----------
    layer : int
        Recorded layer (1-based).
    neurons : sequence of int, optional
        Neuron indices among the recorded ones; default the (up to) 3 most active.
    """
    variables = [v for v in ("u", "r", "q", "p") if sample.has(f"L{layer}/{v}")]
    if not variables:
        raise ValueError(f"sample {sample.name} has no traces of layer {layer} (recording variables u, r, q, p)")
    recorded = sample.neurons[layer]
    neurons = most_active(sample, layer) if neurons is None else np.asarray(neurons)
    missing = sorted(set(neurons.tolist()) - set(recorded.tolist()))
    if missing:
        raise ValueError(f"neurons {missing} of layer {layer} were not recorded (recorded: {recorded.tolist()})")
    t = sample.arrays["t_ms"] * sample.dt_ms
    fig = new_figure(FULL_WIDTH, 0.8 + 1.15 * len(variables))
    axes = np.atleast_2d(fig.subplots(len(variables), len(neurons), sharex=True, sharey="row", squeeze=False))
    for col, neuron in enumerate(neurons):
        column = int(np.flatnonzero(recorded == neuron)[0])
        for row, v in enumerate(variables):
            ax = axes[row, col]
            _burnin(ax, sample, label=row == 0 and col == 0)
            ax.plot(t, sample.arrays[f"L{layer}/{v}"][:, column], color=layer_colour(layer),
                    gid=f"trace-L{layer}-{v}-{neuron}", label=TRACE_LABELS[v])
            if v == "u":
                ax.axhline(0.0, color="0.4", ls="--", lw=0.8, label="threshold (U = 0)")
                if sample.has(f"L{layer}/s"):
                    spike_t = np.flatnonzero(sample.arrays[f"L{layer}/s"][:, neuron]) * sample.dt_ms
                    ax.plot(spike_t, np.zeros_like(spike_t, dtype=float), ls="", marker="^", ms=4, color="k",
                            gid=f"spikes-L{layer}-{neuron}", label="spike")
                ax.set_title(f"layer {layer}, neuron {neuron}")
            if col == 0:
                ax.set_ylabel(f"{TRACE_NAMES[v]} {TRACE_LABELS[v]}\n(dimensionless)")
        axes[-1, col].set_xlabel("time in the sample (ms)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    fig.suptitle(sample.title())
    return fig


@paper_style
def plot_readout(sample: SampleData, layers: Sequence[int] | None = None) -> Figure:
    """Each layer's readout y_k over one sample against the one-hot target."""
    layers = [k for k in (layers or sample.layers) if sample.has(f"L{k}/y")]
    if not layers:
        raise ValueError(f"sample {sample.name} has no readout (recording variable 'y')")
    t = sample.arrays["t_ms"] * sample.dt_ms
    label = int(sample.meta["label"])
    target = sample.arrays["target"]
    predictions = np.atleast_1d(sample.meta.get("predictions", []))
    fig = new_figure(FULL_WIDTH, 3.0)
    axes = fig.subplots(1, len(layers), sharey=True, squeeze=False)[0]
    for ax, k in zip(axes, layers, strict=True):
        y = sample.arrays[f"L{k}/y"]
        _burnin(ax, sample, label=ax is axes[0])
        for c in range(y.shape[1]):
            if c != label:
                ax.plot(t, y[:, c], color="0.65", lw=0.6, gid=f"readout-L{k}-y{c}",
                        label="other classes" if c == (1 if label == 0 else 0) else None)
        ax.plot(t, y[:, label], color="#1f77b4", lw=1.6, gid=f"readout-L{k}-y{label}",
                label=f"y of the true class {label}")
        ax.plot(t, target[:, label], color="k", ls="--", lw=1.0, gid=f"readout-L{k}-target",
                label="target of the true class")
        ax.axhline(0.0, color="k", ls=":", lw=0.6, label="target of the other classes")
        pred = int(predictions[k - 1]) if len(predictions) >= k else None
        if pred is not None and pred != label:
            ax.plot(t, y[:, pred], color="#ff7f0e", lw=1.0, label="y of the predicted class")
        ax.set_title(f"layer {k}" + (f": predicted class {pred}" if pred is not None else ""))
        ax.set_xlabel("time in the sample (ms)")
    axes[0].set_ylabel("readout y (dimensionless)")
    entries = {}
    for ax in axes:  # one legend for all panels (the predicted-class line may be in some only)
        entries.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=3)
    fig.suptitle(sample.title())
    return fig


@paper_style
def plot_firing_rates(samples: Sequence[SampleData], metrics: list[dict] | None = None) -> Figure:
    """Distribution of per-neuron firing rates in each layer over recorded samples, and the layer mean over
    training (metrics.csv ``rate_hz_L*``).

    Parameters
    ----------
    samples : sequence of SampleData
        Samples with spikes (``L<k>/s``), e.g. the test samples of the last evaluation.
    metrics : list of dict, optional
        Rows of metrics.csv.
    """
    samples = [s for s in samples if any(s.has(f"L{k}/s") for k in s.layers)]
    if not samples:
        raise ValueError("no recorded sample has spikes (recording variable 's')")
    layers = [k for k in samples[0].layers if samples[0].has(f"L{k}/s")]
    with_metrics = bool(metrics) and any(f"rate_hz_L{layers[0]}" in r for r in metrics)
    fig = new_figure(FULL_WIDTH, 2.4 + 2.0 * with_metrics)
    axes = fig.subplots(1 + with_metrics, len(layers), squeeze=False)
    for col, k in enumerate(layers):
        total = sum(s.arrays[f"L{k}/s"].sum(axis=0).astype(float) for s in samples)
        duration_s = sum(s.arrays[f"L{k}/s"].shape[0] * s.dt_ms for s in samples) / 1000.0
        rates = total / duration_s
        ax = axes[0, col]
        _, _, patches = ax.hist(rates, bins=min(30, max(5, len(rates) // 3)), color=layer_colour(k), alpha=0.85)
        for patch in patches:
            patch.set_gid(f"rates-L{k}")
        ax.axvline(rates.mean(), color="k", ls="--", lw=0.9, label=f"mean {rates.mean():.1f} Hz")
        splits = sorted({s.meta["split"] for s in samples})
        ax.set_title(f"layer {k}: {len(rates)} neurons, {len(samples)} recorded {'/'.join(splits)} samples")
        ax.set_xlabel("firing rate (Hz)")
        ax.legend(loc="upper right")
        if col == 0:
            ax.set_ylabel("neurons")
        if with_metrics:
            ax = axes[1, col]
            for split, ls in (("train", "-"), ("test", "--")):
                rows = [r for r in metrics if r["split"] == split and f"rate_hz_L{k}" in r]
                ax.plot([r["epoch"] for r in rows], [r[f"rate_hz_L{k}"] for r in rows], ls=ls, marker="o", ms=3,
                        color=layer_colour(k), label=split, gid=f"rate-curve-L{k}-{split}")
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_title(f"layer {k}: mean rate over training")
            ax.legend(loc="best")
            if col == 0:
                ax.set_ylabel("mean firing rate (Hz)")
    return fig
