"""MNIST from the standard IDX files (gzip-compressed or raw), encoded to events.

The images (60,000 train / 10,000 test, 28x28 ``uint8``) are read once into memory and encoded
per sample by a seeded encoder (:mod:`decolle_brian.data.encoders`): Poisson rate, latency, or an
N-MNIST-style saccade emulation (2 polarity channels, 34x34 sensor cropped to 32x32 by default).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .base import DataError, StaticImageDataset, balanced_subset, search_paths

CLASS_NAMES = [str(d) for d in range(10)]
FOLDER_NAMES = ("mnist", "MNIST", "MNIST/raw")
PREFIX = {"train": "train", "test": "t10k"}
HOW_TO_GET = (
    "Put the four MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; gzip-compressed or not) in one folder and "
    "pass it as root (or put it at <data root>/mnist)."
)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw, recognised by its content).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    numpy.ndarray
        Array with the shape and type given by the IDX header.

    Raises
    ------
    DataError
        Bad magic number or a size that does not match the header.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: corrupt gzip file ({err}); download it again") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4]!r}); download it again")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions); download it again")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: {len(raw)} bytes but the IDX header {dims} needs {expected}; the file is truncated "
            "or corrupt, download it again"
        )
    return np.frombuffer(raw, dtype, offset=offset).reshape(dims)


def _find_file(folder: Path, split: str, kind: str) -> Path | None:
    base = f"{PREFIX[split]}-{kind}"
    ndim = 3 if kind == "images" else 1
    for name in (f"{base}-idx{ndim}-ubyte", f"{base}.idx{ndim}-ubyte"):
        for suffix in (".gz", ""):
            if (folder / (name + suffix)).is_file():
                return folder / (name + suffix)
    return None


def find_root(base: Path, split: str) -> Path | None:
    """The folder under ``base`` holding the split's IDX image and label files, or ``None``."""
    for cand in [base, *(base / f for f in FOLDER_NAMES)]:
        if _find_file(cand, split, "images") and _find_file(cand, split, "labels"):
            return cand
    return None


class MNIST(StaticImageDataset):
    """MNIST digits encoded to events.

    Parameters
    ----------
    split : {"train", "test"}
    root : str or Path, optional
        Folder with the IDX files (or a data root holding ``mnist/``).
    encoder : {"poisson", "latency", "saccade"}
    n_steps : int, optional
        T (default: 100 for poisson and latency, 300 for saccade).
    max_rate_hz : float, optional
        Poisson: rate of a white pixel (default 200 Hz).
    threshold, t_max : optional
        Latency: intensity threshold (default 0.2) and latest spike step (default T - 1).
    saccade_ms, amplitude, contrast_threshold, threshold_sigma, log_eps, margin, invert : optional
        Saccade emulation, see :func:`decolle_brian.data.encoders.saccade_encode`.
    crop : {"center", "corner", None}
        Saccade only: crop the 34x34 sensor to 32x32 like N-MNIST (default ``"center"``).
    seed : int
        Encoder seed: the same seed, index and epoch give the same events.
    max_samples : int, optional
        Keep a class-balanced subset of this size.
    """

    name = "mnist"
    n_classes = 10
    class_names = CLASS_NAMES

    def __init__(
        self,
        split: str = "train",
        root: str | Path | None = None,
        *,
        encoder: str = "poisson",
        n_steps: int | None = None,
        seed: int = 0,
        max_samples: int | None = None,
        crop: str | None = "center",
        max_rate_hz: float | None = None,
        threshold: float | None = None,
        t_max: int | None = None,
        saccade_ms: float | None = None,
        amplitude: float | None = None,
        contrast_threshold: float | None = None,
        threshold_sigma: float | None = None,
        log_eps: float | None = None,
        margin: int | None = None,
        invert: bool | None = None,
    ):
        super().__init__(split, seed)
        self.root = self.locate(root, split)
        img_path = _find_file(self.root, split, "images")
        lab_path = _find_file(self.root, split, "labels")
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{img_path} / {lab_path}: shapes {images.shape} and {labels.shape} do not form an image "
                "set with one label per image; check that both files belong to the same split"
            )
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise DataError(f"{lab_path}: labels outside 0..9; not an MNIST labels file")
        keep = balanced_subset(labels.astype(np.int64), max_samples)
        self._orig_index = keep
        self._images = images[keep].astype(np.float32) / 255.0
        self._labels = labels[keep].astype(np.int64)
        self.source = str(img_path)
        self.params = {"max_samples": max_samples, "seed": self.seed}
        enc = {
            "max_rate_hz": max_rate_hz,
            "threshold": threshold,
            "t_max": t_max,
            "saccade_ms": saccade_ms,
            "amplitude": amplitude,
            "contrast_threshold": contrast_threshold,
            "threshold_sigma": threshold_sigma,
            "log_eps": log_eps,
            "margin": margin,
            "invert": invert,
        }
        self._setup_encoder(encoder, n_steps, crop, enc)

    @classmethod
    def locate(cls, root: str | Path | None, split: str = "train") -> Path:
        """Find the MNIST folder, or raise a :class:`DataError` listing the places tried."""
        tried = search_paths(root)
        for base in tried:
            found = find_root(base, split)
            if found is not None:
                return found
        places = "\n  ".join(str(p) for p in tried)
        raise DataError(f"MNIST {split} IDX files not found in, or in mnist/ under:\n  {places}\n{HOW_TO_GET}")
