"""Event data for decolle-brian: datasets, spike encoders, cache and plots.

Typical use::

    from decolle_brian.data import load_dataset
    ds = load_dataset("digits", "train")          # embedded, no download
    sample = ds[0]                                # Sample(counts (T, *input_shape) float32, label)
    print(ds.describe())
"""

from .base import DataError, EventDataset, Sample, one_hot, search_paths
from .cache import BinCache, default_cache_dir
from .registry import DATASETS, dataset_params, default_root, load_dataset

__all__ = [
    "DATASETS",
    "BinCache",
    "DataError",
    "EventDataset",
    "Sample",
    "dataset_params",
    "default_cache_dir",
    "default_root",
    "load_dataset",
    "one_hot",
    "search_paths",
]
