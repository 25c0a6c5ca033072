"""The sweep folder format: its file names, the stored sweep and point state, and the ``sweep.csv`` table.

A sweep folder ``<out>/<name>/<timestamp>/``::

    sweep.json     the sweep as parsed (base configuration, axes, seeds) and its points: --resume needs nothing else
    sweep.toml     a copy of the sweep file, for people
    state.json     per point: status (pending, done, failed, interrupted), error, attempts, compiles, wall time
    sweep.csv      one row per point: id, status, seed, swept values, per-layer test metrics, wall time, compiled
    points/<id>/   the point's run folder <timestamp>/ (a normal run), worker.log, error.txt
    figures/       metric vs parameter, heatmaps (see decolle_brian.sweep.plots)

``state.json`` and ``sweep.csv`` are written atomically (a sweep killed at any moment leaves whole files).
This module only reads and writes files: it imports neither Brian2 nor the configuration, so the figures
of a finished sweep are drawn without the simulator (:mod:`decolle_brian.sweep.plots`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from decolle_brian.errors import SweepError
from decolle_brian.store import write_csv_table, write_json

SWEEP_JSON, SWEEP_TOML, STATE_JSON, SWEEP_CSV = "sweep.json", "sweep.toml", "state.json", "sweep.csv"
POINTS, FIGURES = "points", "figures"
FORMAT_VERSION = 1
#: the metrics a sweep can rank by (``sweep.metric``) and their axis labels
METRICS = {"acc": "test accuracy", "loss": "test loss", "rate_hz": "test firing rate (Hz)"}
#: summary.json field -> sweep.csv column prefix (one column per layer: acc_L1, acc_L2, ...)
METRIC_FIELDS = (("test_accuracy", "acc"), ("test_loss", "loss"), ("rate_hz", "rate_hz"))


def is_sweep_dir(path: str | Path) -> bool:
    """Whether ``path`` is a sweep folder (it has ``sweep.json``)."""
    return (Path(path) / SWEEP_JSON).is_file()


def write_sweep_json(sweep_dir: Path, spec: dict, points: list[dict]) -> None:
    """Store the parsed sweep (``SweepSpec.as_dict()``) and its points (``id``, ``params``, ``seed``)."""
    write_json(Path(sweep_dir) / SWEEP_JSON, {"format_version": FORMAT_VERSION, "spec": spec, "points": points})


def read_sweep_json(sweep_dir: str | Path) -> dict:
    """The stored sweep: ``{"format_version", "spec", "points"}``; :class:`SweepError` if it is not a sweep folder."""
    path = Path(sweep_dir) / SWEEP_JSON
    if not path.is_file():
        raise SweepError(f"{sweep_dir} is not a sweep folder ({SWEEP_JSON} missing)")
    return json.loads(path.read_text())


def new_point_record() -> dict:
    """The state of a point that has not run."""
    return {"status": "pending", "error": "", "attempts": 0, "compiles": 0, "compiled": False, "wall_s": None,
            "structure": "", "run_dir": "", "host": "", "resumed": False, "finished": None}


def write_state(sweep_dir: Path, state: dict[str, dict]) -> None:
    """Write ``state.json`` (atomically): one record per point id."""
    write_json(Path(sweep_dir) / STATE_JSON, {"format_version": FORMAT_VERSION, "points": state})


def read_state(sweep_dir: str | Path) -> dict[str, dict]:
    """The point records of ``state.json`` ({} before the first save)."""
    path = Path(sweep_dir) / STATE_JSON
    return json.loads(path.read_text())["points"] if path.is_file() else {}


def table_row(point_id: str, seed: int, params: dict, record: dict, summary: dict | None) -> dict:
    """One ``sweep.csv`` row: the point, its swept values, its run's per-layer metrics (when done), its record."""
    row = {"point": point_id, "status": record["status"], "seed": seed}
    row.update({key: value for key, value in params.items() if key != "seed"})
    if summary is not None:
        for field, short in METRIC_FIELDS:
            for k, value in enumerate(summary.get(field) or []):
                row[f"{short}_L{k + 1}"] = value
        row["train_wall_s"] = summary.get("train_wall_s")
        row["samples_per_s"] = summary.get("train_samples_per_s")
    row.update({"wall_s": record["wall_s"], "compiled": record["compiled"], "structure": record["structure"],
                "attempts": record["attempts"], "run_dir": record["run_dir"], "error": record["error"]})
    return row


def write_sweep_csv(sweep_dir: Path, rows: list[dict]) -> None:
    """Write ``sweep.csv`` (atomically); a cell holds text as is, anything else as JSON, ``None`` as empty."""
    write_csv_table(Path(sweep_dir) / SWEEP_CSV, [{k: _cell(v) for k, v in row.items()} for row in rows])


def read_sweep_csv(sweep_dir: str | Path) -> list[dict]:
    """Rows of ``sweep.csv`` with numbers, booleans and lists parsed back."""
    with open(Path(sweep_dir) / SWEEP_CSV, newline="") as handle:
        return [{key: _parse(text) for key, text in row.items()} for row in csv.DictReader(handle)]


def _cell(value):
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _parse(text: str):
    if text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
