"""Dataset registry: :data:`DATASETS`, :func:`load_dataset` and :func:`default_root`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from .base import SPLITS, EventDataset
from .digits import Digits
from .dvsgesture import DVSGesture
from .mnist import MNIST
from .nmnist import NMNIST

#: Registry name -> dataset class.
DATASETS: dict[str, type[EventDataset]] = {
    "nmnist": NMNIST,
    "dvsgesture": DVSGesture,
    "mnist": MNIST,
    "digits": Digits,
}


def _get_class(name: str) -> type[EventDataset]:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_params(name: str) -> dict[str, Any]:
    """Preprocessing parameters a dataset accepts, with their defaults.

    Parameters
    ----------
    name : str
        Registry name.

    Returns
    -------
    dict
        Parameter name -> default value (``split`` and ``root`` excluded).
    """
    sig = inspect.signature(_get_class(name).__init__)
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def load_dataset(name: str, split: str = "train", root: str | Path | None = None, **params: Any) -> EventDataset:
    """Open a dataset by name.

    Parameters
    ----------
    name : {"nmnist", "dvsgesture", "mnist", "digits"}
    split : {"train", "test"}
    root : str or Path, optional
        Data folder; default: searched (see :func:`default_root`).
    **params
        Preprocessing options of the dataset (e.g. ``crop``, ``n_steps``, ``encoder``, ``seed``,
        ``max_samples``, ``cache_dir``); see :func:`dataset_params`.

    Returns
    -------
    EventDataset

    Raises
    ------
    ValueError
        Unknown name, split or parameter (the message lists the valid ones).
    DataError
        The data is missing or malformed (the message says where to put the files).
    """
    cls = _get_class(name)
    if split not in SPLITS:
        raise ValueError(f"invalid split {split!r}; valid splits: {', '.join(SPLITS)}")
    valid = dataset_params(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for dataset {name!r}; "
            f"valid parameters: {', '.join(valid)}"
        )
    return cls(split, root, **params)


def default_root(name: str, root: str | Path | None = None, split: str = "train") -> Path | None:
    """Folder a dataset would be read from.

    Searched in order: the explicit ``root`` (only it, when given), ``$DECOLLE_DATA``,
    ``../shared/data`` relative to the working directory and to the repository, and
    ``~/.decolle-brian/data``; in each, the folder itself and the dataset's usual sub-folder
    (``nmnist``, ``dvsgesture``, ``mnist``, and tonic's names).

    Parameters
    ----------
    name : str
        Registry name.
    root : str or Path, optional
    split : {"train", "test"}

    Returns
    -------
    Path or None
        ``None`` for ``"digits"`` (embedded in scikit-learn).

    Raises
    ------
    DataError
        Not found; the message lists the paths tried and where to put the files.
    """
    cls = _get_class(name)
    if cls is Digits:
        return None
    if cls is DVSGesture:
        return DVSGesture.locate(root, split=split)[0]
    return cls.locate(root, split)  # type: ignore[attr-defined]
