"""What a run folder stored, read for plotting: configuration, metrics, summary and recordings."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from decolle_brian.recording.file import FILENAME, RecordingFile
from decolle_brian.store import StoreError, read_metrics


@dataclass
class SampleData:
    """One recorded sample: index fields (``meta``), arrays by path (``"L1/u"``) and the file's context."""

    meta: dict
    arrays: dict[str, np.ndarray]
    attrs: dict                       # file attributes: dt_ms, burnin, every_steps, surrogate, optimizer, ...
    neurons: dict[int, np.ndarray]    # layer (0 = input) -> recorded neuron indices (columns of the traces)
    synapses: dict[int, np.ndarray]   # layer -> (n, 2) (post, pre) of the recorded synapses

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def dt_ms(self) -> float:
        return float(self.attrs.get("dt_ms", 1.0))

    @property
    def layers(self) -> list[int]:
        """Recorded layers (1-based) that have data in this sample."""
        return sorted({int(path.split("/")[0][1:]) for path in self.arrays if path.startswith("L")} - {0})

    def has(self, path: str) -> bool:
        return path in self.arrays

    def title(self) -> str:
        """Sample name, class and per-layer prediction, for figure titles."""
        predictions = ", ".join(f"L{k + 1}: {p}" for k, p in enumerate(np.atleast_1d(self.meta.get("predictions", []))))
        when = (f"after epoch {self.meta['epoch']}" if self.meta["split"] == "test"
                else f"during epoch {self.meta['epoch']}, {self.meta['samples_seen']} samples learned before")
        return (f"{self.meta['split']} sample {self.meta['dataset_index']} (class {self.meta['label']}), {when}; "
                f"predicted {predictions}")


class RunData:
    """Read-only view of a run folder (see :mod:`decolle_brian.store`); every part is read when first used."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        if not (self.run_dir / "config.toml").is_file():
            raise StoreError(f"{self.run_dir} is not a run folder (config.toml missing)")

    @cached_property
    def config(self) -> dict:
        return tomllib.loads((self.run_dir / "config.toml").read_text())

    @cached_property
    def metrics(self) -> list[dict]:
        return read_metrics(self.run_dir)

    @cached_property
    def summary(self) -> dict | None:
        path = self.run_dir / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None

    @cached_property
    def recordings(self) -> RecordingFile | None:
        path = self.run_dir / FILENAME
        return RecordingFile(path, "r") if path.is_file() else None

    def close(self) -> None:
        if "recordings" in self.__dict__ and self.recordings is not None:
            self.recordings.close()

    def __enter__(self) -> RunData:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- recordings ----------------------------------------------------------------------------------------
    def sample(self, name: str) -> SampleData:
        rec = self._require_recordings()
        meta, arrays = rec.sample(name)
        return SampleData(meta, arrays, rec.attrs, rec.neurons(), rec.synapses())

    def samples(self, split: str | None = None) -> list[dict]:
        return self._require_recordings().index(split) if self.recordings is not None else []

    def default_samples(self) -> list[str]:
        """The samples the standard figures show: the last recorded training sample and the first test
        sample of the last evaluation."""
        names = []
        train = self.samples("train")
        if train:
            names.append(train[-1]["name"])
        test = self.samples("test")
        if test:
            last = max(r["epoch"] for r in test)
            names.append(next(r["name"] for r in test if r["epoch"] == last))
        return names

    def weights(self) -> dict:
        return self._require_recordings().weights()

    def _require_recordings(self) -> RecordingFile:
        if self.recordings is None:
            raise StoreError(f"{self.run_dir} has no {FILENAME}: the run recorded nothing "
                             "(set [recording] variables and train it again)")
        return self.recordings
