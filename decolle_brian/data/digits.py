"""The embedded default dataset: scikit-learn's handwritten digits, encoded to events.

``sklearn.datasets.load_digits`` ships 1,797 real 8x8 images (values 0..16) with scikit-learn, so
this works without any download. A fixed, seeded, stratified split gives 1,437 train / 360 test
images; each image is encoded per sample by a seeded encoder (default: Poisson rate code,
T = 100 steps, 200 Hz for a white pixel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import StaticImageDataset, balanced_subset

CLASS_NAMES = [str(d) for d in range(10)]
N_TEST = 360
SPLIT_SEED = 0


def split_indices(split: str, split_seed: int = SPLIT_SEED) -> np.ndarray:
    """Sorted indices (into ``load_digits()``) of the fixed stratified train or test split.

    Parameters
    ----------
    split : {"train", "test"}
    split_seed : int

    Returns
    -------
    numpy.ndarray
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    y = load_digits().target
    train, test = train_test_split(
        np.arange(len(y)), test_size=N_TEST, stratify=y, random_state=split_seed, shuffle=True
    )
    return np.sort(train if split == "train" else test)


class Digits(StaticImageDataset):
    """scikit-learn's 8x8 handwritten digits as events (no download needed).

    Parameters
    ----------
    split : {"train", "test"}
    root : str or Path, optional
        Ignored (the data ships with scikit-learn); accepted for a uniform interface.
    encoder : {"poisson", "latency", "saccade"}
    n_steps : int, optional
        T (default: 100 for poisson and latency, 300 for saccade).
    max_rate_hz : float, optional
        Poisson: rate of a white pixel (default 200 Hz).
    threshold, t_max : optional
        Latency: intensity threshold (default 0.2) and latest spike step (default T - 1).
    saccade_ms, amplitude, contrast_threshold, threshold_sigma, log_eps, margin, invert : optional
        Saccade emulation (see :func:`decolle_brian.data.encoders.saccade_encode`); for 8x8 images
        an amplitude of about 2 pixels and a margin of 1 are sensible.
    crop : {"center", "corner", None}
        Saccade only (default ``None``: keep the whole sensor).
    seed : int
        Encoder seed: the same seed, index and epoch give the same events.
    split_seed : int
        Seed of the stratified train/test split (default 0: 1,437 / 360).
    max_samples : int, optional
        Keep a class-balanced subset of this size.
    """

    name = "digits"
    split_keys = {"split_seed": "one"}  # one stratified draw makes both splits
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
        split_seed: int = SPLIT_SEED,
        max_samples: int | None = None,
        crop: str | None = None,
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
        from sklearn.datasets import load_digits

        super().__init__(split, seed)
        bunch = load_digits()
        idx = split_indices(split, split_seed)
        labels = bunch.target[idx].astype(np.int64)
        keep = balanced_subset(labels, max_samples)
        self._orig_index = idx[keep]
        self._images = (bunch.images[idx[keep]] / 16.0).astype(np.float32)
        self._labels = labels[keep]
        self.source = "sklearn.datasets.load_digits (embedded in scikit-learn; 1,797 8x8 images)"
        self.params = {"split_seed": split_seed, "max_samples": max_samples, "seed": self.seed}
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
