"""On-disk cache of binned recordings (``.npz``, never pickle).

One cache file holds the sparse binned samples read from one group of source files (an N-MNIST
``.bin``, a DvsGesture ``.aedat`` with its labels csv, ...). Its key hashes each source's resolved
path, size and modification time together with the preprocessing parameters, so a changed file or a
changed parameter simply misses the cache; files are written to a temporary name and moved into
place with :func:`os.replace`, so a crash or a bad input never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from decolle_brian.errors import DataError

from .samples import Binned

#: Bump when the stored layout changes; old entries then miss.
CACHE_FORMAT = 1
ENV_CACHE = "DECOLLE_CACHE"


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


def default_cache_dir(data_root: str | Path | None = None) -> Path:
    """Default cache folder.

    ``$DECOLLE_CACHE`` if set, else ``$XDG_CACHE_HOME/decolle-brian`` (``~/.cache/decolle-brian``),
    else ``<data_root>/.decolle-cache`` when the data folder is writable.

    Parameters
    ----------
    data_root : str or Path, optional
        Folder of the dataset, used as a fallback.

    Returns
    -------
    Path
    """
    # absolute, as search_paths: read while a binary runs from its build folder (training.run_ahead)
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    home = Path(xdg).expanduser().absolute() / "decolle-brian"
    if _writable_dir(home) or data_root is None:
        return home
    return Path(data_root).absolute() / ".decolle-cache"


def _stat(path: Path) -> dict[str, Any]:
    try:
        st = path.stat()
    except OSError as err:
        raise DataError(f"{path}: cannot read the source file ({err}); check the data folder") from err
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class BinCache:
    """Cache of binned recordings for one dataset and one set of preprocessing parameters.

    Parameters
    ----------
    dataset : str
        Dataset name (sub-folder of the cache).
    params : dict
        JSON-serialisable preprocessing parameters that change the binned data.
    directory : str or Path, optional
        Cache root (default :func:`default_cache_dir`).
    data_root : str or Path, optional
        Data folder, the fallback location for the default cache root.
    """

    def __init__(
        self,
        dataset: str,
        params: dict[str, Any],
        directory: str | Path | None = None,
        data_root: str | Path | None = None,
    ):
        root = Path(directory).expanduser().absolute() if directory is not None else default_cache_dir(data_root)
        self.directory = root / dataset
        self.dataset = dataset
        self.params = dict(params)
        self.params_hash = hashlib.sha256(json.dumps(self.params, sort_keys=True).encode()).hexdigest()[:16]

    def _meta(self, sources: Sequence[Path]) -> str:
        meta = {
            "format": CACHE_FORMAT,
            "dataset": self.dataset,
            "params": self.params,
            "sources": [_stat(Path(s)) for s in sources],
        }
        return json.dumps(meta, sort_keys=True)

    def path(self, sources: Sequence[Path]) -> Path:
        """Cache file of a group of source files (whether or not it exists).

        Parameters
        ----------
        sources : sequence of Path

        Returns
        -------
        Path
        """
        digest = hashlib.sha256(self._meta(sources).encode()).hexdigest()[:24]
        return self.directory / f"{Path(sources[0]).stem}-{digest}.npz"

    def has(self, sources: Sequence[Path]) -> bool:
        """Whether ``sources`` (as they are now on disk) have an entry, without reading it."""
        return self.path(sources).is_file()

    def load(self, sources: Sequence[Path]) -> list[Binned] | None:
        """Binned samples of ``sources``, or ``None`` on a miss (absent, stale or unreadable).

        Parameters
        ----------
        sources : sequence of Path

        Returns
        -------
        list of Binned or None
        """
        meta = self._meta(sources)
        path = self.path(sources)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["meta"]) != meta:  # guards against a hash collision
                    return None
                n_bins = z["n_bins"]
                return [Binned(z[f"t{k}"], z[f"idx{k}"], z[f"n{k}"], int(n_bins[k])) for k in range(len(n_bins))]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            warnings.warn(f"ignoring unreadable cache file {path} ({err}); it will be rebuilt", stacklevel=2)
            return None

    def store(self, sources: Sequence[Path], group: Sequence[Binned]) -> Path | None:
        """Write the binned samples of ``sources`` atomically.

        The cache only saves time: when the OS refuses the write (permissions, disk full) this warns and
        returns ``None``, and the recording is used without being cached.

        Parameters
        ----------
        sources : sequence of Path
        group : sequence of Binned

        Returns
        -------
        Path or None
            The cache file (``None``: not written).
        """
        path = self.path(sources)
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(self._meta(sources)),
            "n_bins": np.array([b.n_bins for b in group], dtype=np.int64),
        }
        for k, b in enumerate(group):
            arrays[f"t{k}"], arrays[f"idx{k}"], arrays[f"n{k}"] = b.t, b.idx, b.n
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".npz")
        except OSError as err:
            warnings.warn(f"cannot write the data cache {self.directory} ({err.strerror or err}); recordings are "
                          f"read without caching (set {ENV_CACHE} to a writable folder)", stacklevel=2)
            return None
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except OSError as err:
            Path(tmp).unlink(missing_ok=True)
            warnings.warn(f"cannot write the data cache file {path} ({err.strerror or err}); the recording is "
                          "used without caching", stacklevel=2)
            return None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def files(self) -> list[Path]:
        """All cache files of this dataset (any parameters)."""
        return sorted(self.directory.glob("*.npz")) if self.directory.is_dir() else []

    def clear(self) -> int:
        """Delete every cache file of this dataset; return how many were deleted."""
        files = self.files()
        for f in files:
            f.unlink(missing_ok=True)
        return len(files)
