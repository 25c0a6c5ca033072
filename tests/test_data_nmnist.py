"""N-MNIST: Orchard .bin files (synthetic and the 1,100 real recordings)."""

import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import tonic.io

from decolle_brian.data import DataError, load_dataset
from decolle_brian.data.nmnist import NMNIST, read_events

RAW_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def write_bin(path: Path, events) -> Path:
    """N-MNIST 40-bit events: byte x, byte y, polarity in bit 7 + 23-bit microsecond timestamp."""
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


def recount(ev: np.ndarray, crop: str | None, n_steps: int) -> np.ndarray:
    """Independent binning: histogramdd of raw tonic events into (T, 2, H, W)."""
    x, y, t, p = ev["x"], ev["y"], ev["t"], ev["p"]
    step = (t - t[0]) // 1000
    if crop == "center":
        lo, size = 1, 32
    elif crop == "corner":
        lo, size = 0, 32
    else:
        lo, size = 0, 34
    inside = (step < n_steps) & (x >= lo) & (x < lo + size) & (y >= lo) & (y < lo + size)
    sample = np.column_stack([step, p, y - lo, x - lo])[inside]
    edges = [np.arange(n_steps + 1), np.arange(3), np.arange(size + 1), np.arange(size + 1)]
    hist, _ = np.histogramdd(sample, bins=edges)
    return hist


@pytest.fixture
def small_root(tmp_path):
    root = tmp_path / "NMNIST-copy"
    write_bin(root / "Train" / "3" / "00001.bin", [(0, 0, 1, 10), (1, 1, 1, 20), (1, 1, 1, 900), (33, 32, 0, 1500)])
    write_bin(root / "Train" / "7" / "00002.bin", [(10, 12, 0, 5000), (10, 12, 0, 5999), (20, 2, 1, 305_000)])
    write_bin(root / "Test" / "1" / "00001.bin", [(2, 2, 1, 0)])
    return root


# -- synthetic files -------------------------------------------------------------------------------
def test_read_small_files_exactly(small_root, tmp_path):
    ds = NMNIST("train", small_root, cache_dir=tmp_path / "c")
    assert len(ds) == 2 and list(ds.labels) == [3, 7]
    assert ds.input_shape == (2, 32, 32) and ds.n_steps == 300
    c = ds[0].counts
    assert c.shape == (300, 2, 32, 32)
    # (0,0) is cropped away; (1,1) -> (0,0) twice in ms 0; (33,32) cropped away.
    assert c[0, 1, 0, 0] == 2 and c.sum() == 2
    c = ds[1].counts
    # Time zero is the first event (5000 us): both events in step 0 and 0, the 305 ms one beyond T.
    assert c[0, 0, 11, 9] == 2 and c.sum() == 2
    corner = NMNIST("train", small_root, crop="corner", cache_dir=tmp_path / "c")[0].counts
    assert corner[0, 1, 0, 0] == 1 and corner[0, 1, 1, 1] == 2 and corner.sum() == 3
    full = NMNIST("train", small_root, crop=None, n_steps=2, cache_dir=tmp_path / "c")
    assert full.input_shape == (2, 34, 34)
    f = full[0].counts
    assert f.shape == (2, 2, 34, 34) and f[1, 0, 32, 33] == 1 and f.sum() == 4
    assert len(NMNIST("test", small_root, cache=False)) == 1


def test_hand_decoding_matches_tonic(small_root):
    """Decode the 40-bit format by hand (with a timestamp overflow event) and compare."""
    path = write_bin(small_root / "Train" / "7" / "00002.bin", [(10, 12, 0, 5000), (10, 12, 0, 5999)])
    raw = bytearray(path.read_bytes())
    raw += bytes([0, 240, 0, 0, 0])  # overflow marker: later timestamps + 2**13
    raw += bytes([4, 5, 0x80, 0x00, 0x07])  # ON at ts 7 -> 8199
    path.write_bytes(bytes(raw))
    ev = read_events(path)
    b = np.frombuffer(bytes(raw), np.uint8).reshape(-1, 5).astype(np.int64)
    assert np.array_equal(ev["x"], b[[0, 1, 3], 0])
    assert np.array_equal(ev["p"], [0, 0, 1])
    assert np.array_equal(ev["t"], [5000, 5999, 7 + 2**13])


def test_counts_above_one_are_kept(tmp_path):
    root = tmp_path / "n"
    write_bin(root / "Train" / "0" / "a.bin", [(5, 5, 1, 100)] * 4)
    assert NMNIST("train", root, cache=False)[0].counts[0, 1, 4, 4] == 4


def test_truncated_file_raises_or_skips(small_root):
    bad = small_root / "Train" / "3" / "00009.bin"
    bad.write_bytes(b"\x01\x02\x03\x04\x05\x06\x07")
    with pytest.raises(DataError, match=r"00009\.bin.*truncated.*re-extract.*on_error='skip'"):
        NMNIST("train", small_root, cache=False)
    with pytest.warns(UserWarning, match=r"skipped 1 bad N-MNIST files.*00009\.bin"):
        ds = NMNIST("train", small_root, cache=False, on_error="skip")
    assert len(ds) == 2 and len(ds.skipped) == 1
    with pytest.raises(DataError, match="truncated"):
        read_events(bad)


def test_empty_file_and_events_outside_sensor(tmp_path):
    root = tmp_path / "n"
    empty = write_bin(root / "Train" / "0" / "empty.bin", [])
    with pytest.raises(DataError, match=r"empty\.bin.*truncated"):
        NMNIST("train", root, cache=False)
    empty.unlink()
    write_bin(root / "Train" / "0" / "only-overflow.bin", [(0, 240, 0, 0)])
    with pytest.raises(DataError, match=r"only-overflow\.bin: no events.*empty sample"):
        NMNIST("train", root, cache=False)[0]
    (root / "Train" / "0" / "only-overflow.bin").unlink()
    write_bin(root / "Train" / "0" / "wide.bin", [(40, 3, 1, 10)])
    ds = NMNIST("train", root, cache=False, on_error="skip")
    with pytest.raises(DataError, match=r"wide\.bin: 1 events outside the 34x34.*x=40"):
        ds[0]
    with pytest.warns(UserWarning, match="dropped 1 samples"):
        assert ds.prepare(progress=False) == 1


def test_timestamps_going_backwards(tmp_path):
    path = write_bin(tmp_path / "n" / "Train" / "0" / "a.bin", [(1, 1, 0, 500), (2, 2, 1, 900), (3, 3, 1, 100)])
    with pytest.raises(DataError, match=r"a\.bin: timestamps go backwards at event 2 \(100 us after 900 us"):
        read_events(path)


def test_prepare_finds_a_random_file_once(small_root, tmp_path):
    """5,000 random bytes pass the size screen; prepare reads and rejects them, and reads nothing cached twice."""
    bad = small_root / "Train" / "7" / "random.bin"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    ds = NMNIST("train", small_root, cache_dir=tmp_path / "c")  # the scan only screens sizes
    with pytest.raises(DataError, match=r"random\.bin: .*(outside the 34x34|backwards).*on_error='skip'"):
        ds.prepare(progress=False)
    skipping = NMNIST("train", small_root, cache_dir=tmp_path / "c", on_error="skip")
    with pytest.warns(UserWarning, match=r"dropped 1 samples from 1 bad files.*random\.bin"):
        assert skipping.prepare(progress=False) == 1
    assert len(skipping) == 2 and str(bad) not in {str(src[0]) for src, _ in skipping._items}

    read = []

    def reading(sources):
        read.append(sources[0].name)
        raise DataError(f"{sources[0]}: bad")

    again = NMNIST("train", small_root, cache_dir=tmp_path / "c", on_error="skip")
    again._read_group = reading
    with pytest.warns(UserWarning, match="random"):
        again.prepare(progress=False)
    assert read == ["random.bin"]  # the good files are in the cache: only the bad one is read again


def test_folder_without_data(tmp_path):
    (tmp_path / "n" / "Train" / "0").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no N-MNIST \.bin files in .*Train.*Train\.zip"):
        NMNIST("train", tmp_path / "n")


def test_corrupt_input_after_caching_leaves_cache_intact(small_root, tmp_path):
    ds = NMNIST("train", small_root, cache_dir=tmp_path / "c")
    before = ds[1].counts
    (cfile,) = [f for f in ds.cache.files() if f.name.startswith("00002")]
    cached_bytes = cfile.read_bytes()
    src = small_root / "Train" / "7" / "00002.bin"
    # 1) truncate the recording
    time.sleep(0.01)
    src.write_bytes(src.read_bytes()[:-2])
    with pytest.raises(DataError, match="truncated"):
        ds[1]
    # 2) same size, events outside the sensor
    write_bin(src, [(99, 99, 0, 1)] * 3)
    with pytest.raises(DataError, match="outside the 34x34"):
        ds[1]
    assert cfile.read_bytes() == cached_bytes
    assert ds.cache.files() == [cfile]  # nothing added for the bad input
    assert not list(cfile.parent.glob(".tmp-*"))
    # Restoring the original file content gives the same counts again (recomputed, same values).
    write_bin(src, [(10, 12, 0, 5000), (10, 12, 0, 5999), (20, 2, 1, 305_000)])
    assert np.array_equal(ds[1].counts, before)


def test_download_offline_gives_clear_error(tmp_path, monkeypatch):
    import tonic.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tonic.datasets, "NMNIST", offline)
    with pytest.raises(DataError, match=r"downloading N-MNIST \(train\) into .* failed: URLError.*Train\.zip"):
        load_dataset("nmnist", root=tmp_path / "dl", download=True)


def test_download_reads_tonic_layout(tmp_path, monkeypatch):
    """download=True hands over to tonic, then reads its save_to/NMNIST/Train layout."""
    import tonic.datasets

    calls = []

    def fake_tonic(save_to, train):
        calls.append((save_to, train))
        write_bin(Path(save_to) / "NMNIST" / "Train" / "4" / "00001.bin", [(3, 3, 1, 0)])

    monkeypatch.setattr(tonic.datasets, "NMNIST", fake_tonic)
    ds = load_dataset("nmnist", root=tmp_path / "dl", download=True, cache=False)
    assert calls == [(str(tmp_path / "dl"), True)] and list(ds.labels) == [4]
    assert ds.root == tmp_path / "dl" / "NMNIST"


# -- the real recordings ---------------------------------------------------------------------------
@pytest.mark.data
def test_all_real_recordings_load_and_match_recount(shared_data, tmp_path):
    root = shared_data / "nmnist"
    n_total = 0
    for split, n_expected in (("train", 1000), ("test", 100)):
        ds = load_dataset("nmnist", split, root=root, cache_dir=tmp_path / "c")
        assert len(ds) == n_expected
        files = [src[0] for src, _ in ds._items]
        assert np.array_equal(ds.labels, [int(f.parent.name) for f in files])  # folder digit
        for i, f in enumerate(files):
            s = ds[i]
            assert s.label == int(f.parent.name)
            ev = tonic.io.read_mnist_file(str(f), dtype=RAW_DTYPE)
            assert np.array_equal(s.counts, recount(ev, "center", 300)), f
        n_total += len(ds)
    assert n_total == 1100
    assert set(np.unique(ds.labels)) == set(range(10))


@pytest.mark.data
def test_real_recording_other_crops_and_cache(shared_data, tmp_path):
    root = shared_data / "nmnist"
    f = sorted((root / "Train" / "8").glob("*.bin"))[0]
    ev = tonic.io.read_mnist_file(str(f), dtype=RAW_DTYPE)
    for crop in ("corner", None):
        ds = load_dataset("nmnist", root=root, crop=crop, n_steps=350, cache_dir=tmp_path / "c")
        i = next(k for k, (src, _) in enumerate(ds._items) if src[0] == f)
        assert np.array_equal(ds[i].counts, recount(ev, crop, 350))
        # second read, from the cache file, gives the same counts
        assert NMNIST("train", root, crop=crop, n_steps=350, cache_dir=tmp_path / "c").cache.load([f])
        assert np.array_equal(ds[i].counts, recount(ev, crop, 350))


@pytest.mark.data
def test_real_subset_is_balanced(shared_data):
    ds = load_dataset("nmnist", "test", root=shared_data, max_samples=30, cache=False)
    per_class = np.bincount(ds.labels, minlength=10)
    full = np.bincount(load_dataset("nmnist", "test", root=shared_data, cache=False).labels, minlength=10)
    # as balanced as the classes allow: min(3, available) of each, the rest round-robin
    assert len(ds) == 30 and np.all(per_class >= np.minimum(3, full)) and per_class.max() <= 4
    assert "nmnist (test split)" in ds.describe() and str(shared_data / "nmnist") in ds.describe()
