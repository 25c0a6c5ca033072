"""N-MNIST (Orchard et al. 2015): 34x34 DVS recordings of MNIST digits moved along three saccades.

Reads the official layout unchanged (``Train/<digit>/*.bin``, ``Test/<digit>/*.bin``; 40-bit events
decoded by :func:`tonic.io.read_mnist_file`) and tonic's download folder (``<save_to>/NMNIST/Train``).
Reference preprocessing: crop 34x34 to the central 32x32, 1 ms bins counted per polarity channel
(channel = polarity: 0 OFF, 1 ON), T = 300 steps from the first event of the recording.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tonic.io

from .base import Binned, DataError, ParamError, RecordingDataset, bin_events, network_timeout, search_paths

SENSOR = (34, 34)
CLASS_NAMES = [str(d) for d in range(10)]
SPLIT_FOLDERS = {"train": "Train", "test": "Test"}
#: Sub-folders of a data root that may hold the dataset (``NMNIST`` is tonic's).
FOLDER_NAMES = ("nmnist", "NMNIST", "N-MNIST")
CROPS = ("center", "corner", None)
HOW_TO_GET = (
    "Download N-MNIST (https://www.garrickorchard.com/datasets/n-mnist, Train.zip and Test.zip), unzip "
    "so that the folder holds Train/<digit>/*.bin and Test/<digit>/*.bin, and pass that folder as "
    "root (or put it at <data root>/nmnist); or pass download=True to let tonic download it."
)
_EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])


def find_root(base: Path, split: str) -> Path | None:
    """The N-MNIST folder under ``base`` holding the split, or ``None``.

    Parameters
    ----------
    base : Path
        A data root, the N-MNIST folder itself, or tonic's ``save_to`` folder.
    split : str

    Returns
    -------
    Path or None
    """
    for cand in [base, *(base / f for f in FOLDER_NAMES)]:
        if (cand / SPLIT_FOLDERS[split]).is_dir():
            return cand
    return None


def read_events(path: str | Path) -> np.ndarray:
    """Events of one N-MNIST ``.bin`` file, checked.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    numpy.ndarray
        Structured array with ``int64`` fields x, y, t (microseconds), p (0 OFF, 1 ON).

    Raises
    ------
    DataError
        Empty or truncated file, events outside the 34x34 sensor, or timestamps out of order.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0 or size % 5:
        raise DataError(
            f"{path}: truncated N-MNIST file ({size} bytes, expected a non-zero multiple of 5: "
            "40-bit events); re-extract it from the original archive"
        )
    ev = tonic.io.read_mnist_file(str(path), dtype=_EVENT_DTYPE)
    if len(ev) == 0:
        raise DataError(f"{path}: no events in the recording (an empty sample); remove or replace the file")
    bad = (ev["x"] >= SENSOR[1]) | (ev["y"] >= SENSOR[0])
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(
            f"{path}: {int(bad.sum())} events outside the 34x34 N-MNIST sensor (first: x={ev['x'][j]}, "
            f"y={ev['y'][j]}); the file is corrupt or not N-MNIST, replace it"
        )
    backwards = np.flatnonzero(np.diff(ev["t"]) < 0)
    if backwards.size:  # a recording is written in time order (checked on every real N-MNIST file)
        j = int(backwards[0]) + 1
        raise DataError(
            f"{path}: timestamps go backwards at event {j} ({ev['t'][j]} us after {ev['t'][j - 1]} us, "
            f"{backwards.size} times in all); the file is corrupt, replace it"
        )
    return ev


def download(save_to: str | Path, split: str, timeout_s: float = 60.0) -> Path:
    """Download and extract one N-MNIST split with tonic into ``<save_to>/NMNIST``.

    Parameters
    ----------
    save_to : str or Path
    split : str
    timeout_s : float
        Network timeout of each connection.

    Returns
    -------
    Path
        The folder holding ``Train``/``Test``.
    """
    import tonic.datasets

    save_to = Path(save_to).expanduser()
    save_to.mkdir(parents=True, exist_ok=True)
    try:
        with network_timeout(timeout_s):
            tonic.datasets.NMNIST(save_to=str(save_to), train=split == "train")
    except Exception as err:  # any network or archive failure: explain instead of a deep traceback
        raise DataError(
            f"downloading N-MNIST ({split}) into {save_to} failed: {type(err).__name__}: {err}. {HOW_TO_GET}"
        ) from err
    return save_to / "NMNIST"


class NMNIST(RecordingDataset):
    """N-MNIST as 1 ms event-count frames.

    Parameters
    ----------
    split : {"train", "test"}
    root : str or Path, optional
        Folder with ``Train/`` and ``Test/`` (or a data root holding ``nmnist/`` or tonic's
        ``NMNIST/``). Default: searched with :func:`decolle_brian.data.search_paths`.
    crop : {"center", "corner", None}
        ``"center"`` (default): 34x34 -> 32x32 dropping one pixel on each border; ``"corner"``:
        keep x, y < 32 (what torchneuromorphic's ``CropDims`` does); ``None``: keep 34x34.
    n_steps : int
        T, steps of 1 ms from the first event of the recording (default 300).
    max_samples : int, optional
        Keep a class-balanced subset of this size.
    cache, cache_dir, on_error
        See :class:`decolle_brian.data.base.RecordingDataset`.
    download : bool
        If the data is not found, let tonic download it (needs internet; opt-in).
    seed : int
        Unused (no random choices); accepted for a uniform interface.
    """

    name = "nmnist"
    n_classes = 10
    class_names = CLASS_NAMES

    def __init__(
        self,
        split: str = "train",
        root: str | Path | None = None,
        *,
        crop: str | None = "center",
        n_steps: int = 300,
        max_samples: int | None = None,
        cache: bool = True,
        cache_dir: str | Path | None = None,
        on_error: str = "raise",
        download: bool = False,
        seed: int = 0,
    ):
        super().__init__(split, seed, cache, cache_dir, on_error)
        if crop not in CROPS:
            raise ParamError(f"invalid crop {crop!r}; valid values: {CROPS}")
        if int(n_steps) < 1:
            raise ParamError(f"n_steps must be >= 1, got {n_steps}")
        self.crop = crop
        self.n_steps = int(n_steps)
        self.input_shape = (2, 32, 32) if crop else (2, *SENSOR)
        self.root = self.locate(root, split, download)
        self.source = str(self.root / SPLIT_FOLDERS[split])
        self.params = {"crop": crop, "n_steps": self.n_steps, "bin_ms": 1, "max_samples": max_samples}
        self._scan()

    @classmethod
    def locate(cls, root: str | Path | None, split: str = "train", download: bool = False) -> Path:
        """Find the N-MNIST folder (downloading it if asked), or raise a :class:`DataError`.

        Parameters
        ----------
        root : str or Path, optional
        split : str
        download : bool

        Returns
        -------
        Path
        """
        tried = search_paths(root)
        for base in tried:
            found = find_root(base, split)
            if found is not None:
                return found
        if download:
            return download_to(tried[0] if root is not None else tried[-1], split)
        places = "\n  ".join(str(p) for p in tried)
        raise DataError(
            f"N-MNIST {split} data not found (looked for {SPLIT_FOLDERS[split]}/ in, and in nmnist/ or "
            f"NMNIST/ under:\n  {places}\n{HOW_TO_GET}"
        )

    def _scan(self) -> None:
        split_dir = self.root / SPLIT_FOLDERS[self.split]
        labels: list[int] = []
        for digit in range(10):
            for path in sorted((split_dir / str(digit)).glob("*.bin")):
                size = path.stat().st_size
                if size == 0 or size % 5:
                    self._bad_file(
                        path,
                        f"truncated N-MNIST file ({size} bytes, not a non-zero multiple of 5); "
                        "re-extract it from the original archive",
                    )
                    continue
                self._items.append(((path,), 0))
                labels.append(digit)
        if not self._items and not self.skipped:
            raise DataError(
                f"no N-MNIST .bin files in {split_dir}/<digit>/ (expected {split_dir}/0/00001.bin ...). {HOW_TO_GET}"
            )
        self._finish_scan(labels, "N-MNIST files")

    def _cache_params(self) -> dict[str, Any]:
        return {"crop": self.crop, "bin_ms": 1}

    def _read_group(self, sources: tuple[Path, ...]) -> list[Binned]:
        ev = read_events(sources[0])
        x, y = ev["x"], ev["y"]
        keep = np.ones(len(ev), dtype=bool)
        if self.crop == "center":
            keep = (x >= 1) & (x <= 32) & (y >= 1) & (y <= 32)
            x, y = x - 1, y - 1
        elif self.crop == "corner":
            keep = (x < 32) & (y < 32)
        # Time zero is the first event of the recording, before cropping (as the reference).
        t0 = int(ev["t"][0])
        return [bin_events(ev["t"][keep], ev["p"][keep], y[keep], x[keep], self.input_shape, t0)]


def download_to(save_to: Path, split: str) -> Path:
    """Download with tonic into ``save_to`` and return the N-MNIST folder (see :func:`download`)."""
    folder = download(save_to, split)
    if find_root(folder, split) is None:
        raise DataError(f"tonic finished but {folder / SPLIT_FOLDERS[split]} is missing. {HOW_TO_GET}")
    return folder
