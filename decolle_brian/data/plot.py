"""Plots of one sample: a grid of frames (events summed over time windows) or an event raster."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Sample

KINDS = ("frames", "raster")
# Channel colours (RGB): 2 channels are polarities, 0 = OFF (blue), 1 = ON (red).
_OFF_RGB = np.array([0.15, 0.35, 1.0])
_ON_RGB = np.array([1.0, 0.25, 0.1])


def _counts_of(sample: Sample | np.ndarray) -> tuple[np.ndarray, int | None]:
    if isinstance(sample, Sample):
        return np.asarray(sample.counts), int(sample.label)
    return np.asarray(sample), None


def _as_tchw(counts: np.ndarray) -> np.ndarray:
    if counts.ndim == 4:
        return counts
    if counts.ndim == 3:
        return counts[:, None]
    if counts.ndim == 2:  # (T, n): a 1-pixel-high strip
        return counts[:, None, None, :]
    raise ValueError(f"expected counts of shape (T, C, H, W), (T, H, W) or (T, n), got {counts.shape}")


def _frame_rgb(frame: np.ndarray, vmax: float) -> np.ndarray:
    """(C, H, W) summed counts -> (H, W, 3) image: OFF/ON colours on white, or grey for 1 channel."""
    if frame.shape[0] == 2:
        off = np.clip(frame[0] / vmax, 0, 1)[..., None]
        on = np.clip(frame[1] / vmax, 0, 1)[..., None]
        # Subtractive mixing on white: each polarity darkens toward its colour.
        return np.clip(1.0 - off * (1.0 - _OFF_RGB) - on * (1.0 - _ON_RGB), 0, 1)
    grey = 1.0 - np.clip(frame.sum(axis=0) / vmax, 0, 1)
    return np.repeat(grey[..., None], 3, axis=-1)


def plot_sample(
    sample: Sample | np.ndarray,
    ax: Any = None,
    kind: str = "frames",
    n_frames: int = 6,
    dt_ms: float = 1.0,
    title: str | None = None,
    class_names: list[str] | None = None,
) -> Any:
    """Show one sample as a frame grid or an event raster.

    Parameters
    ----------
    sample : Sample or numpy.ndarray
        A :class:`~decolle_brian.data.base.Sample` or its counts, shape ``(T, C, H, W)``.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; default: a new figure.
    kind : {"frames", "raster"}
        ``"frames"``: events summed over ``n_frames`` equal time windows, side by side (2 channels:
        OFF blue, ON red; 1 channel: grey). ``"raster"``: input neuron index (C-order flattening of
        ``(C, H, W)``) against time; marker size grows with the count.
    n_frames : int
        Number of time windows for ``"frames"``.
    dt_ms : float
        Step width in ms (time axis).
    title : str, optional
        Default: the label (and class name) when known.
    class_names : list of str, optional
        Names for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if kind not in KINDS:
        raise ValueError(f"invalid kind {kind!r}; valid values: {', '.join(KINDS)}")
    counts, label = _counts_of(sample)
    c = _as_tchw(counts)
    n_steps, n_ch, h, w = c.shape
    if ax is None:
        size = (min(2.0 * n_frames, 16), 2.8) if kind == "frames" else (8, 4.5)
        fig, ax = plt.subplots(figsize=size, layout="constrained")
    else:
        fig = ax.figure
    if title is None and label is not None:
        name = class_names[label] if class_names is not None else None
        title = f"label {label}" + (f" ({name})" if name is not None and name != str(label) else "")

    if kind == "frames":
        n_frames = max(1, min(int(n_frames), n_steps))
        edges = np.linspace(0, n_steps, n_frames + 1).round().astype(int)
        frames = np.stack([c[a:b].sum(axis=0) for a, b in zip(edges[:-1], edges[1:], strict=True)])
        vmax = max(float(np.percentile(frames[frames > 0], 99)) if (frames > 0).any() else 1.0, 1.0)
        gap = max(1, w // 16)
        strip = np.ones((h, n_frames * (w + gap) - gap, 3))
        for k, fr in enumerate(frames):
            strip[:, k * (w + gap) : k * (w + gap) + w] = _frame_rgb(fr, vmax)
        ax.imshow(strip, interpolation="nearest", origin="upper", extent=(0, strip.shape[1], h, 0))
        centres = [k * (w + gap) + w / 2 for k in range(n_frames)]
        ax.set_xticks(centres)
        ax.set_xticklabels([f"{a * dt_ms:g}-{b * dt_ms:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)])
        ax.set_xlabel("time window (ms); each frame: x (pixel) left to right")
        ax.set_ylabel("y (pixel)")
        if n_ch == 2:
            from matplotlib.patches import Patch

            ax.legend(
                handles=[Patch(color=_ON_RGB, label="ON"), Patch(color=_OFF_RGB, label="OFF")],
                loc="upper left",
                bbox_to_anchor=(1.0, 1.0),
                fontsize="small",
            )
    else:
        flat = c.reshape(n_steps, -1)
        t, idx = np.nonzero(flat)
        n = flat[t, idx]
        per_ch = h * w
        colours = [_OFF_RGB, _ON_RGB] if n_ch == 2 else [np.zeros(3)] * n_ch
        names = ["OFF", "ON"] if n_ch == 2 else [f"channel {k}" for k in range(n_ch)]
        for ch in range(n_ch):
            sel = (idx // per_ch) == ch
            ax.scatter(
                t[sel] * dt_ms,
                idx[sel],
                s=2.0 * n[sel],
                color=colours[ch],
                marker="|" if n_ch == 1 else "o",
                linewidths=0.8,
                label=names[ch],
            )
        ax.set_xlim(0, n_steps * dt_ms)
        ax.set_ylim(-0.5, flat.shape[1] - 0.5)
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("input neuron index (C-order flattening)")
        if n_ch > 1:
            ax.legend(loc="upper right", fontsize="small", markerscale=3)
    if title:
        ax.set_title(title)
    return fig
