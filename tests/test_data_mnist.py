"""MNIST IDX files, the embedded digits set and the spike encoders."""

import gzip
import struct

import numpy as np
import pytest

from decolle_brian.data import DataError, load_dataset
from decolle_brian.data.digits import split_indices
from decolle_brian.data.encoders import latency_encode, poisson_encode, saccade_encode, saccade_path
from decolle_brian.data.mnist import read_idx

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


@pytest.fixture
def tiny_mnist(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist"
    root.mkdir()
    for prefix, n, gz in (("train", 30, True), ("t10k", 12, False)):
        imgs = rng.integers(0, 256, (n, 28, 28))
        labels = np.arange(n) % 10
        for kind, arr, nd in (("images", imgs, 3), ("labels", labels, 1)):
            name = root / f"{prefix}-{kind}-idx{nd}-ubyte"
            if gz:
                (root / (name.name + ".gz")).write_bytes(gzip.compress(idx_bytes(arr)))
            else:
                name.write_bytes(idx_bytes(arr))
    return root


# -- IDX -------------------------------------------------------------------------------------------
def test_idx_gz_and_raw(tiny_mnist, tmp_path):
    a = read_idx(tiny_mnist / "train-images-idx3-ubyte.gz")
    b = read_idx(tiny_mnist / "t10k-images-idx3-ubyte")
    assert a.shape == (30, 28, 28) and b.shape == (12, 28, 28) and a.dtype == np.uint8
    assert read_idx(tiny_mnist / "t10k-labels-idx1-ubyte").tolist() == [i % 10 for i in range(12)]
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x12\x34\x56\x78" + bytes(10))
    with pytest.raises(DataError, match=r"bad-idx: not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short-idx"
    short.write_bytes(idx_bytes(np.zeros((3, 4, 4)))[:-5])
    with pytest.raises(DataError, match=r"short-idx: .*truncated"):
        read_idx(short)
    header = tmp_path / "header-idx"  # cut inside the header: its dimensions (numpy's ValueError before)
    header.write_bytes(idx_bytes(np.zeros((3, 4, 4)))[:9])
    with pytest.raises(DataError, match=r"header-idx: truncated IDX header \(9 bytes for 3 dimensions\)"):
        read_idx(header)


def test_mnist_dataset_from_idx(tiny_mnist):
    ds = load_dataset("mnist", "test", root=tiny_mnist.parent)  # finds <root>/mnist
    assert len(ds) == 12 and ds.input_shape == (1, 28, 28) and ds.n_steps == 100
    s = ds[3]
    assert s.label == 3 and s.counts.shape == (100, 1, 28, 28)
    sac = load_dataset("mnist", "train", root=tiny_mnist, encoder="saccade", max_samples=10)
    assert sac.input_shape == (2, 32, 32) and sac.n_steps == 300 and len(sac) == 10
    assert sorted(sac.labels.tolist()) == list(range(10))
    assert load_dataset("mnist", root=tiny_mnist, encoder="saccade", crop=None).input_shape == (2, 34, 34)
    lat = load_dataset("mnist", root=tiny_mnist, encoder="latency", n_steps=20, threshold=0.5)
    assert lat[0].counts.shape == (20, 1, 28, 28) and lat[0].counts.max() == 1


@pytest.mark.data
def test_real_mnist_official_counts(shared_data):
    root = shared_data / "mnist"
    imgs = read_idx(root / "train-images-idx3-ubyte.gz")
    assert imgs.shape == (60000, 28, 28) and imgs.dtype == np.uint8
    assert read_idx(root / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)
    tr = load_dataset("mnist", "train", root=root)
    te = load_dataset("mnist", "test", root=shared_data)
    assert len(tr) == 60000 and len(te) == 10000
    assert np.bincount(tr.labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(te.labels).tolist() == MNIST_TEST_COUNTS
    assert tr.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert te.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.array_equal(tr.image(0), imgs[0] / np.float32(255))
    s = te[0]
    assert s.label == 7 and s.counts.shape == (100, 1, 28, 28)


# -- digits ----------------------------------------------------------------------------------------
def test_digits_fixed_stratified_split():
    from sklearn.datasets import load_digits

    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(tr), len(te)) == (1437, 360)
    a, b = split_indices("train"), split_indices("test")
    assert not set(a) & set(b) and len(set(a) | set(b)) == 1797
    assert np.array_equal(a, split_indices("train"))  # fixed
    y = load_digits().target
    frac = np.bincount(te.labels) / np.bincount(y)
    assert np.all(np.abs(frac - 360 / 1797) < 0.01)  # stratified
    assert np.array_equal(te.labels, y[b])
    assert tr.input_shape == (1, 8, 8) and tr.n_steps == 100 and tr.encoder == "poisson"


def test_digits_seeded_and_index_stable():
    ds = load_dataset("digits", "test", seed=5)
    same = load_dataset("digits", "test", seed=5)
    other = load_dataset("digits", "test", seed=6)
    assert np.array_equal(ds[7].counts, same[7].counts)
    assert not np.array_equal(ds[7].counts, other[7].counts)
    # the events of an image depend on its identity, not on its position in a subset or access order
    sub = load_dataset("digits", "test", seed=5, max_samples=50)
    j = 4
    i = int(np.flatnonzero(ds._orig_index == sub._orig_index[j])[0])
    assert np.array_equal(sub[j].counts, ds[i].counts)
    # a new epoch draws new Poisson spikes, reproducibly
    ds.set_epoch(1)
    e1 = ds[7].counts
    assert not np.array_equal(e1, same[7].counts)
    same.set_epoch(1)
    assert np.array_equal(e1, same[7].counts)


def test_digits_other_encoders():
    lat = load_dataset("digits", "train", encoder="latency", n_steps=50)
    c = lat[0].counts
    img = lat.image(0)
    assert c.shape == (50, 1, 8, 8) and np.array_equal(c.sum(0)[0], (img > 0.2).astype(np.float32))
    sac = load_dataset("digits", "train", encoder="saccade", n_steps=60, amplitude=2.0, margin=1, saccade_ms=20)
    assert sac.input_shape == (2, 10, 10) and sac[0].counts.shape == (60, 2, 10, 10)
    assert sac[0].counts[:, 0].sum() > 0 and sac[0].counts[:, 1].sum() > 0


# -- encoders --------------------------------------------------------------------------------------
def test_poisson_rate_matches_intensity():
    img = np.array([[0.0, 0.25], [0.5, 1.0]])
    c = poisson_encode(img, 20000, np.random.default_rng(1), max_rate_hz=400.0)
    assert c.shape == (20000, 1, 2, 2) and set(np.unique(c)) <= {0.0, 1.0}
    rate_hz = c.mean(axis=0)[0] * 1000.0
    expected = img * 400.0
    sd = np.sqrt(img * 0.4 * (1 - img * 0.4) / 20000) * 1000.0
    assert np.all(np.abs(rate_hz - expected) <= 4 * sd + 1e-9)
    assert rate_hz[0, 0] == 0
    r = np.random.default_rng
    assert np.array_equal(poisson_encode(img, 50, r(3)), poisson_encode(img, 50, r(3)))
    assert not np.array_equal(poisson_encode(img, 50, r(3)), poisson_encode(img, 50, r(4)))
    with pytest.raises(ValueError, match="max_rate_hz"):
        poisson_encode(img, 5, r(0), max_rate_hz=2000.0)


def test_latency_ordering():
    img = np.array([[1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.21]])
    c = latency_encode(img, 100, threshold=0.2)
    assert c.shape == (100, 1, 1, 7)
    counts = c.sum(axis=0)[0, 0]
    assert counts.tolist() == [1, 1, 1, 1, 0, 0, 1]  # one spike per pixel above the threshold
    t_first = np.argmax(c[:, 0, 0, :], axis=0)[[0, 1, 2, 3, 6]]
    assert t_first[0] == 0 and t_first[-1] >= 95
    assert np.all(np.diff(t_first) > 0)  # brighter -> earlier
    assert np.array_equal(latency_encode(img, 100), latency_encode(img, 100, np.random.default_rng(9)))


def test_saccade_events_only_at_edges():
    img = np.zeros((28, 28))
    img[4:24, 4:24] = 1.0
    c = saccade_encode(img, 300, np.random.default_rng(0))
    assert c.shape == (300, 2, 34, 34)
    on, off = c[:, 1].sum(0), c[:, 0].sum(0)
    assert on.sum() > 100 and off.sum() > 100
    ev = on + off
    # offsets span [-0.5, 6.5] px: canvas pixels 11..22 always see the square's inside, pixels
    # 0..2 and 31..33 always the background -> no events there; the edges in between fire.
    assert ev[11:23, 11:23].sum() == 0
    assert ev[:3].sum() == 0 and ev[31:].sum() == 0 and ev[:, :3].sum() == 0 and ev[:, 31:].sum() == 0
    assert (ev[3:11, 3:31] > 0).any() and (ev[3:31, 23:31] > 0).any()
    # a blank image (no edges) gives no events at all, whatever the seed
    assert saccade_encode(np.zeros((28, 28)), 300, np.random.default_rng(0)).sum() == 0


def test_saccade_seeded_path_and_polarity():
    img = np.zeros((28, 28))
    img[10:18, 6:22] = 1.0
    r = np.random.default_rng
    a = saccade_encode(img, 300, r(1))
    assert np.array_equal(a, saccade_encode(img, 300, r(1)))
    assert not np.array_equal(a, saccade_encode(img, 300, r(2)))
    assert np.array_equal(
        saccade_encode(img, 300, r(1), threshold_sigma=0.0), saccade_encode(img, 300, r(2), threshold_sigma=0.0)
    )
    path = saccade_path(301)
    assert np.allclose(path[[0, 100, 200, 300]], [[0, 0], [3.5, 7], [7, 0], [0, 0]])
    # first saccade: the image moves down; as in the real N-MNIST recordings, ON events trail
    # the stroke (above it) and OFF events lead it (below).
    rows = np.arange(34)[:, None]
    on, off = a[:100, 1].sum(0), a[:100, 0].sum(0)
    assert (on * rows).sum() / on.sum() < (off * rows).sum() / off.sum()
