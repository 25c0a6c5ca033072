"""Dataset API, registry, root search and on-disk cache."""

import os
import time
from pathlib import Path

import numpy as np
import pytest

import decolle_brian.data as data
from decolle_brian.data import DATASETS, DataError, EventDataset, Sample, load_dataset
from decolle_brian.data.base import Binned, balanced_subset, bin_events, one_hot, search_paths
from decolle_brian.data.cache import BinCache
from decolle_brian.data.nmnist import NMNIST


def write_bin(path: Path, events) -> Path:
    """N-MNIST 40-bit events: x, y, polarity (bit 7) + 23-bit timestamp."""
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


@pytest.fixture
def tiny_nmnist(tmp_path):
    root = tmp_path / "nm"
    for d in range(3):
        for k in range(2):
            write_bin(root / "Train" / str(d) / f"{k:05d}.bin", [(5 + d, 6, 1, 100), (7, 8, 0, 2500 + k)])
    write_bin(root / "Test" / "0" / "00001.bin", [(1, 1, 1, 0)])
    return root


# -- small helpers ---------------------------------------------------------------------------------
def test_bin_events_counts_and_dense_window():
    t = np.array([0, 999, 1000, 1000, 1000, 5500])
    ch = np.array([0, 0, 1, 1, 0, 1])
    y = np.array([0, 0, 2, 2, 2, 1])
    x = np.array([1, 1, 3, 3, 3, 0])
    b = bin_events(t, ch, y, x, (2, 3, 4), t0_us=0)
    assert b.n_bins == 6 and b.n_events == 6
    dense = b.to_dense(0, 8, (2, 3, 4))
    assert dense.shape == (8, 2, 3, 4) and dense.dtype == np.float32
    assert dense[0, 0, 0, 1] == 2  # two events in the same ms and pixel: count 2 kept
    assert dense[1, 1, 2, 3] == 2 and dense[1, 0, 2, 3] == 1
    assert dense[5, 1, 1, 0] == 1 and dense.sum() == 6
    win = b.to_dense(1, 2, (2, 3, 4))  # a window later in the recording
    assert np.array_equal(win, dense[1:3])


def test_one_hot_and_balanced_subset():
    assert np.array_equal(one_hot(2, 4), [0, 0, 1, 0])
    oh = one_hot(1, 3, n_steps=5)
    assert oh.shape == (5, 3) and (oh[:, 1] == 1).all() and oh.sum() == 5
    labels = np.repeat(np.arange(4), [10, 1, 5, 5])
    keep = balanced_subset(labels, 8)
    assert len(keep) == 8 and np.all(np.diff(keep) > 0)
    assert set(labels[keep]) == {0, 1, 2, 3}
    assert np.array_equal(balanced_subset(labels, None), np.arange(len(labels)))


def test_dataerror_is_valueerror():
    assert issubclass(DataError, ValueError)


# -- registry --------------------------------------------------------------------------------------
def test_registry_names_and_contract():
    assert set(DATASETS) == {"nmnist", "dvsgesture", "mnist", "digits"}
    assert all(issubclass(c, EventDataset) for c in DATASETS.values())
    ds = load_dataset("digits", "test", max_samples=20)
    s = ds[0]
    assert isinstance(s, Sample) and isinstance(s.label, int)
    assert s.counts.shape == (ds.n_steps, *ds.input_shape) and s.counts.dtype == np.float32
    assert ds.labels.dtype.kind == "i" and len(ds.labels) == len(ds) == 20
    assert len(ds.class_names) == ds.n_classes == 10
    text = ds.describe()
    for piece in ("digits", "test", "20", "(1, 8, 8)", "T = 100", "encoder", "sklearn"):
        assert piece in text


def test_load_dataset_rejects_unknown_name_param_split():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*nmnist, dvsgesture, mnist, digits"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) 'colour'.*valid parameters:.*encoder"):
        load_dataset("digits", colour=True)
    with pytest.raises(ValueError, match="invalid split 'val'"):
        load_dataset("digits", "val")
    with pytest.raises(ValueError, match="unknown encoder 'morse'.*poisson, latency, saccade"):
        load_dataset("digits", encoder="morse")
    with pytest.raises(ValueError, match="do not apply to encoder 'poisson'"):
        load_dataset("digits", threshold=0.3)
    assert "crop" in data.dataset_params("nmnist")


# -- root search -----------------------------------------------------------------------------------
def test_search_paths_order(monkeypatch, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("DECOLLE_DATA", f"{a}{os.pathsep}{b}")
    monkeypatch.chdir(tmp_path)
    paths = search_paths()
    assert paths[:3] == [a, b, tmp_path.parent / "shared" / "data"]
    repo_shared = Path(data.__file__).resolve().parents[2].parent / "shared" / "data"
    assert repo_shared in paths
    assert paths[-1] == Path.home() / ".decolle-brian" / "data"
    assert search_paths(tmp_path / "x") == [tmp_path / "x"]  # explicit root: only there


def test_default_root_env_var_and_layouts(monkeypatch, tiny_nmnist, tmp_path):
    # <data root>/nm is not a known folder name, so the env var must point at it directly...
    monkeypatch.setenv("DECOLLE_DATA", str(tiny_nmnist))
    assert data.default_root("nmnist") == tiny_nmnist
    # ... or hold it as nmnist/ (or tonic's NMNIST/).
    (tmp_path / "base").mkdir()
    (tiny_nmnist).rename(tmp_path / "base" / "NMNIST")
    monkeypatch.setenv("DECOLLE_DATA", str(tmp_path / "base"))
    assert data.default_root("nmnist") == tmp_path / "base" / "NMNIST"
    assert data.default_root("digits") is None


def test_missing_dataset_message_lists_paths(tmp_path):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    for name in ("nmnist", "dvsgesture", "mnist"):
        with pytest.raises(DataError) as err:
            load_dataset(name, root=empty)
        msg = str(err.value)
        assert str(empty) in msg and "root" in msg and "not found" in msg


# -- cache -----------------------------------------------------------------------------------------
def test_cache_roundtrip_atomic_and_invalidation(tmp_path):
    src = tmp_path / "rec.bin"
    src.write_bytes(b"12345")
    b = bin_events(np.array([0, 2000]), np.array([0, 1]), np.array([0, 1]), np.array([1, 0]), (2, 2, 2), 0)
    cache = BinCache("toy", {"crop": "center"}, tmp_path / "cache")
    assert cache.load([src]) is None
    path = cache.store([src], [b, b])
    assert path.suffix == ".npz" and path.parent == tmp_path / "cache" / "toy"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    got = cache.load([src])
    assert len(got) == 2 and all(isinstance(g, Binned) for g in got)
    assert np.array_equal(got[0].to_dense(0, 3, (2, 2, 2)), b.to_dense(0, 3, (2, 2, 2)))
    with np.load(path, allow_pickle=False) as z:  # plain arrays, loadable without pickle
        assert "meta" in z.files
    # Another preprocessing parameter -> another key.
    assert BinCache("toy", {"crop": None}, tmp_path / "cache").load([src]) is None
    # Changed source (mtime and size) -> miss.
    time.sleep(0.01)
    src.write_bytes(b"1234567890")
    assert cache.load([src]) is None
    # Same size, new mtime -> miss.
    src2 = tmp_path / "rec2.bin"
    src2.write_bytes(b"abcde")
    cache.store([src2], [b])
    os.utime(src2, ns=(src2.stat().st_atime_ns, src2.stat().st_mtime_ns + 10**9))
    assert cache.load([src2]) is None


def test_unreadable_cache_file_is_rebuilt(tmp_path, tiny_nmnist):
    ds = NMNIST("train", tiny_nmnist, cache_dir=tmp_path / "c")
    first = ds[0].counts
    (cfile,) = ds.cache.files()
    cfile.write_bytes(b"garbage")
    ds2 = NMNIST("train", tiny_nmnist, cache_dir=tmp_path / "c")
    with pytest.warns(UserWarning, match="unreadable cache file"):
        again = ds2[0].counts
    assert np.array_equal(first, again)
    with np.load(cfile, allow_pickle=False):
        pass  # rewritten atomically, readable again


def test_epochs_after_first_do_not_reread_events(tmp_path, tiny_nmnist, monkeypatch):
    ds = NMNIST("train", tiny_nmnist, cache_dir=tmp_path / "c", n_steps=5)
    first = [ds[i].counts for i in range(len(ds))]
    assert len(ds.cache.files()) == len(ds)

    def boom(*a, **k):
        raise AssertionError("events re-read although cached")

    monkeypatch.setattr("decolle_brian.data.nmnist.read_events", boom)
    ds2 = NMNIST("train", tiny_nmnist, cache_dir=tmp_path / "c", n_steps=5)
    assert all(np.array_equal(a, ds2[i].counts) for i, a in enumerate(first))
    # Without a cache, events are read again.
    ds3 = NMNIST("train", tiny_nmnist, cache=False, n_steps=5)
    with pytest.raises(AssertionError, match="re-read"):
        ds3[0]


def test_default_cache_dir(monkeypatch, tmp_path):
    from decolle_brian.data.cache import default_cache_dir

    monkeypatch.delenv("DECOLLE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "decolle-brian"
    monkeypatch.setenv("DECOLLE_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"


def test_data_and_cache_folders_are_absolute(monkeypatch, tmp_path):
    """Relative data and cache folders become absolute when a dataset is made: the training loop reads samples
    while a binary runs from its build folder as the working directory (training.run_ahead)."""
    from decolle_brian.data.cache import BinCache, default_cache_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DECOLLE_DATA", "rel-data")
    assert search_paths()[0] == tmp_path / "rel-data"
    assert search_paths("rel-root") == [tmp_path / "rel-root"]
    monkeypatch.setenv("DECOLLE_CACHE", "rel-cache")
    assert default_cache_dir() == tmp_path / "rel-cache"
    assert BinCache("nmnist", {}, "other-cache").directory.is_absolute()


@pytest.mark.standalone
def test_the_training_loop_reads_a_relative_data_folder_while_a_binary_runs(monkeypatch, tiny_nmnist, tmp_path):
    """Samples prepared ahead are read while a C++ standalone binary runs from its build folder (the process's
    working directory): a data folder given relative to the caller's working directory still reads, and the
    results equal the loop's without preparing ahead."""
    from decolle_brian.devices import Simulator
    from decolle_brian.network.params import init_params
    from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec
    from decolle_brian.training import iter_chunks

    monkeypatch.chdir(tiny_nmnist.parent)
    monkeypatch.delenv("DECOLLE_CACHE", raising=False)
    dataset = NMNIST("train", tiny_nmnist.name, n_steps=12, cache_dir="cache")  # both relative
    spec = NetworkSpec(n_inputs=int(np.prod(dataset.input_shape)), layers=(DenseLayerSpec(4),), n_classes=3,
                       learning=LearningSpec(lr=0.05, dropout=0.5, burnin=2))
    sim = Simulator(spec, 2 * 12, build_dir=tmp_path / "build")
    params = init_params(spec, np.random.default_rng(0))
    runs = {overlap: [(done, [r.predictions for r in results], {k: v.copy() for k, v in learned.items()})
                      for done, learned, results in iter_chunks(sim, dataset, range(len(dataset)), params, learn=True,
                                                                lr=0.05, rng=np.random.default_rng(1),
                                                                overlap=overlap)]
            for overlap in (True, False)}
    assert [done for done, _, _ in runs[True]] == [2, 4, 6]
    for (_, votes, learned), (_, votes_seq, learned_seq) in zip(runs[True], runs[False], strict=True):
        assert votes == votes_seq
        for key in learned:
            np.testing.assert_array_equal(learned[key], learned_seq[key])
