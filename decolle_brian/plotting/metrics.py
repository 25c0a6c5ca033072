"""Figures of a run's metrics: loss and accuracy per layer over training, confusion matrices, synaptic operations.

Drawn from metrics.csv (one row per evaluation point) and summary.json (final test metrics).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from decolle_brian.plotting.style import FULL_WIDTH, layer_colour, new_figure, paper_style


def _layers(rows: list[dict], prefix: str) -> list[int]:
    keys = {key for row in rows for key in row}
    return sorted(int(key[len(prefix):]) for key in keys if key.startswith(prefix) and key[len(prefix):].isdigit())


@paper_style
def plot_learning_curves(rows: list[dict], n_classes: int | None = None, loss_name: str = "local loss") -> Figure:
    """Local loss and accuracy of every layer over training (train: solid; test: dashed), and the test error.

    The third panel is the test error 100 - accuracy on a log axis: near 100 % accuracy the accuracy panel
    (0-100 %, chance marked) cannot show the differences that matter (96.5 vs 98 % is 3.5 vs 2 % error).

    Parameters
    ----------
    rows : list of dict
        metrics.csv rows (``epoch``, ``split``, ``loss_L<k>``, ``acc_L<k>``).
    n_classes : int, optional
        Draws the chance level.
    """
    layers = _layers(rows, "acc_L")
    if not layers:
        raise ValueError("metrics.csv has no accuracy columns (acc_L1, ...)")
    fig = new_figure(FULL_WIDTH, 2.6)
    ax_loss, ax_acc, ax_err = fig.subplots(1, 3)
    for k in layers:
        for split, ls, marker in (("train", "-", "o"), ("test", "--", "s")):
            sel = [r for r in rows if r["split"] == split and f"acc_L{k}" in r]
            if not sel:
                continue
            epochs = [r["epoch"] for r in sel]
            accuracy = [100.0 * r[f"acc_L{k}"] for r in sel]
            style = {"ls": ls, "marker": marker, "ms": 3, "color": layer_colour(k), "label": f"L{k} {split}"}
            ax_loss.plot(epochs, [r[f"loss_L{k}"] for r in sel], gid=f"loss-L{k}-{split}", **style)
            ax_acc.plot(epochs, accuracy, gid=f"acc-L{k}-{split}", **style)
            if split == "test":
                # an error of 0 cannot be drawn on a log axis: shown at 0.001 %
                ax_err.plot(epochs, [max(100.0 - a, 1e-3) for a in accuracy], gid=f"err-L{k}-test", **style)
    if n_classes:
        ax_acc.axhline(100.0 / n_classes, color="0.5", ls=":", lw=0.8, label="chance")
    ax_loss.set_ylabel(f"{loss_name} (mean per step)")
    ax_acc.set_ylabel("accuracy, majority vote (%)")
    ax_acc.set_ylim(0, 100)
    ax_err.set_ylabel("test error (%)")
    ax_err.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 2, 3, 4 rather than 2 x 10^0
    ax_err.yaxis.set_major_formatter(plain)
    ax_err.yaxis.set_minor_formatter(plain)
    for ax in (ax_loss, ax_acc, ax_err):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = ax_acc.get_legend_handles_labels()
    ax_err.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax_loss.set_title("local loss per layer")
    ax_acc.set_title("accuracy per layer")
    ax_err.set_title("test error per layer")
    return fig


@paper_style
def plot_confusion(summary: dict, class_names: list[str] | None = None) -> Figure:
    """Test confusion matrix of every layer (counts; rows: true class, columns: predicted class)."""
    matrices = [np.asarray(m) for m in summary.get("confusion", [])]
    if not matrices:
        raise ValueError("summary.json has no confusion matrices")
    fig = new_figure(FULL_WIDTH, 0.4 + 0.75 * min(FULL_WIDTH / len(matrices), 3.4))
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    accuracy = summary.get("test_accuracy", [None] * len(matrices))
    for k, (ax, m) in enumerate(zip(axes, matrices, strict=True), start=1):
        image = ax.imshow(m, cmap="Blues", vmin=0, gid=f"confusion-L{k}")
        n = m.shape[0]
        if n <= 12:
            top = m.max() or 1
            for i in range(n):
                for j in range(n):
                    if m[i, j]:
                        ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=6,
                                color="white" if m[i, j] > 0.6 * top else "black")
        ticks = np.arange(n)
        ax.set_xticks(ticks, class_names or ticks, fontsize=6)
        ax.set_yticks(ticks, class_names or ticks, fontsize=6)
        ax.set_xlabel("predicted class")
        if k == 1:
            ax.set_ylabel("true class")
        acc = accuracy[k - 1]
        ax.set_title(f"layer {k}" + (f": {100 * acc:.1f} % correct" if acc is not None else ""))
        bar = fig.colorbar(image, ax=ax, label="test samples", shrink=0.8)
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    return fig


@paper_style
def plot_synops(rows: list[dict], summary: dict | None = None, dense_ops: list[float] | None = None) -> Figure:
    """Synaptic operations per inference (spikes x fan-out) per layer: the energy proxy of event-driven hardware.

    Parameters
    ----------
    rows : list of dict
        metrics.csv rows with ``synops_L<k>`` (test evaluations).
    summary : dict, optional
        summary.json: the final ``synops_per_sample`` per layer (default: the last test row).
    dense_ops : list of float, optional
        Per layer, the operations of a clocked network that updates every synapse at every step
        (steps x neurons x fan-out), drawn for comparison.
    """
    layers = _layers(rows, "synops_L")
    test = [r for r in rows if r["split"] == "test" and f"synops_L{layers[0]}" in r] if layers else []
    final = list(summary["synops_per_sample"]) if summary and summary.get("synops_per_sample") else (
        [test[-1][f"synops_L{k}"] for k in layers] if test else [])
    if not final:
        raise ValueError("no synaptic operation counts (metrics.csv synops_L*, summary.json synops_per_sample)")
    layers = layers or list(range(1, len(final) + 1))
    fig = new_figure(FULL_WIDTH, 2.6)
    ax_bar, ax_time = fig.subplots(1, 2)
    x = np.arange(len(final))
    if dense_ops is not None:
        # behind the measured bars: the work of a clocked network with the same synapses
        ax_bar.bar(x, dense_ops, width=0.8, fill=False, hatch="///", edgecolor="0.55", lw=0.6, gid="synops-dense",
                   label="clocked dense: every synapse, every step", zorder=1)
    bars = ax_bar.bar(x, final, width=0.55, color=[layer_colour(k) for k in layers], label="event-driven (measured)",
                      zorder=2)
    for bar in bars:
        bar.set_gid("synops-final")
    if dense_ops is not None:
        ax_bar.set_yscale("log")
        ax_bar.set_ylim(min(final) / 3, max(dense_ops) * 4)
        for xi, (s, d) in enumerate(zip(final, dense_ops, strict=True)):
            ax_bar.text(xi, s * 1.1, f"{100 * s / d:.1f} % of dense", ha="center", va="bottom", fontsize=6.5,
                        zorder=3)
    ax_bar.set_xticks(x, [f"layer {k}" for k in layers])
    ax_bar.set_ylabel("synaptic operations per inference")
    ax_bar.set_title(f"after training: {sum(final):,.0f} per inference in total")
    ax_bar.legend(loc="upper right", fontsize=6.5)
    for k in layers:
        ax_time.plot([r["epoch"] for r in test], [r[f"synops_L{k}"] for r in test], marker="o", ms=3,
                     color=layer_colour(k), label=f"L{k}", gid=f"synops-L{k}")
    ax_time.set_xlabel("epoch")
    ax_time.set_ylabel("synaptic operations per inference")
    ax_time.set_title("over training (test samples)")
    ax_time.xaxis.get_major_locator().set_params(integer=True)
    ax_time.legend(loc="best")
    return fig
