"""One look for every figure: sizes for a paper page, fonts readable when printed, saving in several formats."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

from decolle_brian.store import writing

#: widths (inches) of a two-column paper page and of one column
FULL_WIDTH, COLUMN_WIDTH = 7.0, 3.4
FORMATS = ("png", "pdf", "svg")
PAPER = {
    "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "figure.titlesize": 9, "lines.linewidth": 1.0, "axes.spines.top": False,
    "axes.spines.right": False, "legend.frameon": False, "savefig.dpi": 200, "figure.dpi": 100,
    "image.interpolation": "nearest", "pdf.fonttype": 42, "svg.fonttype": "none",
}
#: colours of the layers (input first) and of the three factors of the rule
LAYER_COLOURS = ["0.25", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b"]
FACTOR_COLOURS = {"bp": "#d62728", "sigma": "#9467bd", "p": "#1f77b4", "g": "0.2", "dw": "#2ca02c"}


def paper_style(function):
    """Build the figure under the paper rcParams (they are read when artists are created)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(PAPER):
            return function(*args, **kwargs)
    return wrapper


def new_figure(width: float = FULL_WIDTH, height: float = 3.0) -> Figure:
    """A figure that is not registered with pyplot (no global state, freed when dropped)."""
    return Figure(figsize=(width, height), layout="constrained")


def layer_colour(layer: int) -> str:
    """The colour of a layer in every figure (the palette repeats after its last colour)."""
    return LAYER_COLOURS[layer % len(LAYER_COLOURS)]


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"png,pdf"`` -> ("png", "pdf"); raises ValueError naming an unknown format."""
    formats = tuple(f.strip().lower().lstrip(".") for f in (text.split(",") if isinstance(text, str) else text))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"unknown figure format(s) {bad or [text]}; choose from {list(FORMATS)}")
    return formats


def save(fig: Figure, out_dir: str | Path, name: str, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.<format>`` for every format; returns the paths."""
    out_dir = Path(out_dir)
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with mpl.rc_context(PAPER):
        for fmt in formats:
            path = out_dir / f"{name}.{fmt}"
            with writing(path):
                fig.savefig(path, format=fmt, metadata={"Software": "decolle-brian"} if fmt == "png" else None)
            paths.append(path)
    return paths
