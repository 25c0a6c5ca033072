"""DvsGesture: files written here in the exact IBM format (AEDAT 3.1 + labels csv) and tonic's layout."""

import struct
from pathlib import Path

import numpy as np
import pytest

from decolle_brian.data import DataError, load_dataset
from decolle_brian.data.dvsgesture import DVSGesture, read_aedat31, read_labels

HEADER = [
    b"#!AER-DAT3.1",
    b"#Format: RAW",
    b"#Source 1: DVS128",
    b"#Start-Time: 2017-02-08 10:21:33 (TZ+0100)",
    b"#!END-HEADER",
]


def polarity_packet(events, overflow=0, capacity=None):
    """AEDAT 3.1 packet: 28-byte header + 8-byte polarity events (address uint32, timestamp int32)."""
    n = len(events)
    cap = n if capacity is None else capacity
    head = struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, cap, n, n)
    body = b"".join(struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | 1, t) for x, y, p, t in events)
    return head + body + b"\x00" * 8 * (cap - n)


def special_packet(n=2):
    """A packet of another event type (special events, 8 bytes each) that the reader must skip."""
    head = struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, n, n, n)
    return head + b"".join(struct.pack("<Ii", 0xFFFFFFFF, 7) for _ in range(n))


def write_aedat(path: Path, packets, header=HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\r\n" for line in header) + b"".join(packets))
    return path


def write_labels(path: Path, rows, header="class,startTime_usec,endTime_usec") -> Path:
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def make_recording(root: Path, name: str, events, rows, packets_extra=()):
    """userNN_<lighting>.aedat with the events split into two packets, and its labels csv."""
    half = len(events) // 2
    write_aedat(
        root / f"{name}.aedat", [polarity_packet(events[:half]), *packets_extra, polarity_packet(events[half:])]
    )
    write_labels(root / f"{name}_labels.csv", rows)


@pytest.fixture
def ibm_root(tmp_path):
    root = tmp_path / "DvsGesture"
    ev = [
        (0, 0, 1, 1000),
        (10, 20, 0, 9999),  # before the first gesture
        (0, 0, 1, 10_000),  # gesture 1 starts at 10 ms: step 0
        (3, 3, 1, 10_500),  # same 4x4 block, same ms: count 2
        (4, 0, 1, 10_999),  # next block to the right (x // 4 = 1)
        (127, 127, 0, 12_000),  # bottom-right block, OFF, step 2
        (50, 60, 1, 19_999),  # last event of gesture 1 (step 9)
        (50, 60, 1, 20_000),  # end time is exclusive
        (8, 4, 0, 30_000),  # gesture 2 (class 11) from 30 ms to 40 ms
        (9, 5, 0, 30_001),
        (100, 1, 1, 45_000),
    ]
    make_recording(root, "user01_fluorescent", ev, [(3, 10_000, 20_000), (11, 30_000, 40_000)], [special_packet()])
    make_recording(root, "user24_led", [(1, 1, 1, 0), (2, 2, 0, 5000)], [(5, 0, 5000)])
    return root


# -- reader ----------------------------------------------------------------------------------------
def test_aedat31_read_back_exactly(tmp_path):
    events = [(0, 0, 0, 0), (127, 0, 1, 5), (0, 127, 1, 6), (64, 33, 0, 2**31 - 1)]
    path = write_aedat(
        tmp_path / "user02_lab.aedat",
        [
            polarity_packet(events[:2]),
            special_packet(3),
            polarity_packet(events[2:]),
            polarity_packet([(5, 6, 1, 7)], overflow=1),
        ],
    )
    ev = read_aedat31(path)
    assert ev["x"].tolist() == [0, 127, 0, 64, 5]
    assert ev["y"].tolist() == [0, 0, 127, 33, 6]
    assert ev["p"].tolist() == [0, 1, 1, 0, 1]
    assert ev["t"].tolist() == [0, 5, 6, 2**31 - 1, 2**31 + 7]  # overflow << 31 | ts


def test_aedat31_capacity_and_validity(tmp_path):
    # capacity larger than the event number: the unused slots are skipped
    path = write_aedat(
        tmp_path / "a.aedat", [polarity_packet([(1, 2, 1, 3)], capacity=4), polarity_packet([(4, 5, 0, 6)])]
    )
    assert read_aedat31(path)["x"].tolist() == [1, 4]
    # an event with the validity bit cleared is kept by default (as the reference) or dropped on request
    raw = bytearray(path.read_bytes())
    off = raw.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n") + 28
    raw[off] &= 0xFE
    path.write_bytes(bytes(raw))
    assert read_aedat31(path)["x"].tolist() == [1, 4]
    assert read_aedat31(path, drop_invalid=True)["x"].tolist() == [4]


def test_aedat31_agrees_with_tonic_packet_reader(tmp_path):
    """tonic's header + packet reader with the IBM bit layout decodes a plain polarity file the same way."""
    from tonic.io import get_aer_events_from_file, read_aedat_header_from_file

    rng = np.random.default_rng(0)
    events = [
        (int(x), int(y), int(p), int(t))
        for x, y, p, t in zip(
            rng.integers(0, 128, 50),
            rng.integers(0, 128, 50),
            rng.integers(0, 2, 50),
            np.sort(rng.integers(0, 10**6, 50)),
            strict=True,
        )
    ]
    path = write_aedat(tmp_path / "b.aedat", [polarity_packet(events[:20]), polarity_packet(events[20:])])
    version, start, _ = read_aedat_header_from_file(str(path))
    raw = get_aer_events_from_file(str(path), version, start)
    a = raw["address"].astype(np.int64)
    ev = read_aedat31(path)
    assert version == pytest.approx(3.1)
    assert np.array_equal(ev["x"], (a >> 17) & 0x1FFF)
    assert np.array_equal(ev["y"], (a >> 2) & 0x1FFF)
    assert np.array_equal(ev["p"], (a >> 1) & 1)
    assert np.array_equal(ev["t"], raw["timeStamp"])


# -- dataset: downsampling, cutting, windows -------------------------------------------------------
def test_downsampling_and_label_cutting_by_hand(ibm_root, tmp_path):
    ds = DVSGesture("train", ibm_root, users=[1], n_steps=12, random_start=False, cache_dir=tmp_path / "c")
    assert len(ds) == 2 and ds.labels.tolist() == [2, 10]  # classes 3 and 11 -> 0-based
    assert ds.input_shape == (2, 32, 32) and ds.n_classes == 11
    c = ds[0].counts
    assert c.shape == (12, 2, 32, 32)
    expected = np.zeros_like(c)
    expected[0, 1, 0, 0] = 2  # (0,0) and (3,3) at 10.0 and 10.5 ms
    expected[0, 1, 0, 1] = 1  # (4,0) -> block x 1
    expected[2, 0, 31, 31] = 1  # (127,127) OFF at 12 ms
    expected[9, 1, 15, 12] = 1  # (50,60) at 19.999 ms; the one at 20 ms is outside [start, end)
    assert np.array_equal(c, expected)
    c2 = ds[1].counts
    assert c2[0, 0, 1, 2] == 2 and c2.sum() == 2  # (8,4) and (9,5) -> block (y 1, x 2)
    assert ds.binned(0).n_bins == 10 and ds.binned(1).n_bins == 10
    ds8 = DVSGesture("train", ibm_root, users=[1], n_steps=12, downsample=8, random_start=False, cache=False)
    assert ds8.input_shape == (2, 16, 16) and ds8[0].counts[0, 1, 0, 0] == 3


def test_split_selection_by_user_and_trials_file(ibm_root):
    tr = DVSGesture("train", ibm_root, cache=False)
    te = DVSGesture("test", ibm_root, cache=False)
    assert tr.sample_users.tolist() == [1, 1] and te.sample_users.tolist() == [24]
    assert tr.n_steps == 500 and te.n_steps == 1800 and tr.random_start and not te.random_start
    (ibm_root / "trials_to_train.txt").write_text("user24_led.aedat\n\n")
    assert DVSGesture("train", ibm_root, cache=False).sample_users.tolist() == [24]
    (ibm_root / "trials_to_test.txt").write_text("user01_fluorescent.aedat\nuser05_lab.aedat\n")
    with pytest.raises(DataError, match=r"user05_lab\.aedat: listed in trials_to_test\.txt but missing"):
        DVSGesture("test", ibm_root, cache=False)
    assert DVSGesture("test", ibm_root, users=[1, 24], cache=False).sample_users.tolist() == [1, 1, 24]


def test_random_train_window_is_seeded_and_inside_gesture(ibm_root, tmp_path):
    kw = {"users": [1], "n_steps": 4, "cache_dir": tmp_path / "c"}
    ds = DVSGesture("train", ibm_root, seed=3, **kw)
    full = ds.binned(0).to_dense(0, 10, ds.input_shape)
    starts = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        w = ds[0].counts
        again = DVSGesture("train", ibm_root, seed=3, **kw)
        again.set_epoch(epoch)
        assert np.array_equal(w, again[0].counts)  # same seed + index + epoch -> same window
        match = [s for s in range(0, 7) if np.array_equal(w, full[s : s + 4])]
        assert match, "window is not a slice of the gesture"
        starts.add(match[0])
    assert len(starts) > 1  # the start varies with the epoch
    test = DVSGesture("test", ibm_root, users=[1], n_steps=4, cache=False)
    assert np.array_equal(test[0].counts, full[:4])


def test_via_load_dataset_and_describe(ibm_root, tmp_path):
    ds = load_dataset("dvsgesture", "test", root=ibm_root.parent, cache_dir=tmp_path / "c", n_steps=20)
    assert len(ds) == 1 and ds.labels.tolist() == [4] and ds.layout == "ibm"
    text = ds.describe()
    assert "dvsgesture (test split)" in text and "right arm counter-clockwise" in text and "downsample = 4" in text


# -- tonic layout ----------------------------------------------------------------------------------
def test_tonic_npy_layout(tmp_path):
    root = tmp_path / "save_to" / "DVSGesture"
    a = np.array([[0, 0, 1, 100.0], [3, 2, 1, 100.4], [127, 64, 0, 103.0], [5, 5, 0, 600.0]])
    (root / "ibmGestureTrain" / "user02_natural").mkdir(parents=True)
    np.save(root / "ibmGestureTrain" / "user02_natural" / "4.npy", a)
    np.save(root / "ibmGestureTrain" / "user02_natural" / "10.npy", a[:2])
    (root / "ibmGestureTest" / "user25_lab").mkdir(parents=True)
    np.save(root / "ibmGestureTest" / "user25_lab" / "0.npy", a[:1])
    ds = load_dataset(
        "dvsgesture", "train", root=tmp_path / "save_to", n_steps=5, random_start=False, cache_dir=tmp_path / "c"
    )
    assert ds.layout == "tonic" and ds.labels.tolist() == [4, 10] and ds.sample_users.tolist() == [2, 2]
    c = ds[0].counts  # times are ms; time zero = first event
    assert c[0, 1, 0, 0] == 2 and c[3, 0, 16, 31] == 1 and c.sum() == 3
    assert ds.binned(0).n_bins == 501
    te = load_dataset("dvsgesture", "test", root=root, cache=False)
    assert te.labels.tolist() == [0] and te.n_steps == 1800
    np.save(root / "ibmGestureTest" / "user25_lab" / "0.npy", np.zeros((3, 3)))
    with pytest.raises(DataError, match=r"0\.npy: expected an \(n, 4\) array"):
        load_dataset("dvsgesture", "test", root=root, cache=False)[0]


def test_download_offline_gives_clear_error(tmp_path, monkeypatch):
    import tonic.datasets

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tonic.datasets, "DVSGesture", offline)
    with pytest.raises(DataError, match=r"downloading DvsGesture \(test\) .* failed: OSError: network is unreachable"):
        load_dataset("dvsgesture", "test", root=tmp_path / "x", download=True)


# -- bad input -------------------------------------------------------------------------------------
def test_wrong_header_or_version(tmp_path):
    p = write_aedat(
        tmp_path / "user03_led.aedat", [polarity_packet([(1, 1, 1, 1)])], header=[b"#!AER-DAT2.0", b"#!END-HEADER"]
    )
    with pytest.raises(DataError, match=r"user03_led\.aedat: not an AEDAT 3\.1 file \(first line #!AER-DAT2\.0"):
        read_aedat31(p)
    p.write_bytes(b"\x00\x01garbage")
    with pytest.raises(DataError, match="not an AEDAT 3.1 file"):
        read_aedat31(p)
    write_aedat(p, [polarity_packet([(1, 1, 1, 1)])], header=[b"#!AER-DAT3.1", b"#Format: RAW"])
    with pytest.raises(DataError, match="no '#!END-HEADER' line"):
        read_aedat31(p)
    write_labels(tmp_path / "user03_led_labels.csv", [(1, 0, 10)])
    with pytest.raises(DataError, match=r"user03_led\.aedat.*END-HEADER.*on_error='skip'"):
        DVSGesture("train", tmp_path, cache=False)
    with pytest.warns(UserWarning, match="skipped 1 bad DvsGesture recordings"):
        with pytest.raises(DataError, match="no usable samples"):
            DVSGesture("train", tmp_path, cache=False, on_error="skip")


def test_bad_header_names_the_file_once(tmp_path):
    p = write_aedat(tmp_path / "user03_led.aedat", [polarity_packet([(1, 1, 1, 1)])], header=[b"#!AER-DAT2.0"])
    write_labels(tmp_path / "user03_led_labels.csv", [(1, 0, 10)])
    with pytest.raises(DataError) as info:
        DVSGesture("train", tmp_path, cache=False)
    assert str(info.value).count(str(p)) == 1, str(info.value)
    assert str(info.value).startswith(f"{p}: not an AEDAT 3.1 file")
    with pytest.warns(UserWarning) as caught, pytest.raises(DataError, match="no usable samples"):
        DVSGesture("train", tmp_path, cache=False, on_error="skip")
    (warning,) = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert warning.count(str(p)) == 1, warning


def test_empty_aedat_is_reported_as_empty(tmp_path):
    p = tmp_path / "user03_led.aedat"
    p.write_bytes(b"")
    with pytest.raises(DataError, match=r"user03_led\.aedat: empty file \(0 bytes\)") as info:
        read_aedat31(p)
    assert "first line" not in str(info.value)
    write_labels(tmp_path / "user03_led_labels.csv", [(1, 0, 10)])
    with pytest.raises(DataError, match=r"user03_led\.aedat: empty file \(0 bytes\).*on_error='skip'") as info:
        DVSGesture("train", tmp_path, cache=False)
    assert str(info.value).count(str(p)) == 1


def test_truncated_packet_and_events_outside_sensor(tmp_path):
    p = write_aedat(tmp_path / "a.aedat", [polarity_packet([(1, 1, 1, 1), (2, 2, 0, 2)])])
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"a\.aedat: truncated AEDAT packet at byte \d+"):
        read_aedat31(p)
    write_aedat(p, [polarity_packet([(1, 1, 1, 1), (200, 2, 0, 2)])])
    with pytest.raises(DataError, match=r"a\.aedat: 1 events outside the 128x128.*x=200"):
        read_aedat31(p)


@pytest.mark.parametrize(
    ("header", "rows", "match"),
    [
        ("class,startTime_usec", [(1, 0)], "lacks column.*endTime_usec"),
        ("class,start,end", [(1, 0, 5)], "lacks column.*startTime_usec, endTime_usec"),
        ("class,startTime_usec,endTime_usec", [(12, 0, 5)], "class 12 outside 1..11"),
        ("class,startTime_usec,endTime_usec", [(1, 9, 5)], "start 9 us is not before end 5 us"),
        ("class,startTime_usec,endTime_usec", [(1, "x", 5)], "line 2: bad row"),
        ("class,startTime_usec,endTime_usec", [], "no gestures"),
    ],
)
def test_bad_labels_csv(tmp_path, header, rows, match):
    p = write_labels(tmp_path / "user01_lab_labels.csv", rows, header=header)
    with pytest.raises(DataError, match=r"user01_lab_labels\.csv.*" + match):
        read_labels(p)


def test_labels_outside_recording_and_empty_gesture(ibm_root, tmp_path):
    write_labels(ibm_root / "user24_led_labels.csv", [(5, 0, 5000), (2, 50_000_000, 51_000_000)])
    ds = DVSGesture("test", ibm_root, cache_dir=tmp_path / "c")
    with pytest.raises(
        DataError, match=r"user24_led_labels\.csv, line 3: gesture 50000000\.\.51000000 us lies outside the recording"
    ):
        ds[0]
    write_labels(ibm_root / "user24_led_labels.csv", [(5, 0, 5000), (2, 1000, 4000)])
    with pytest.raises(DataError, match=r"line 3: no events between 1000 and 4000 us.*empty sample"):
        DVSGesture("test", ibm_root, cache=False)[1]
    assert ds.cache.files() == []  # nothing cached from bad input
    with pytest.warns(UserWarning, match="dropped 2 samples"):
        assert DVSGesture("test", ibm_root, cache=False, on_error="skip").prepare(progress=False) == 2


def test_corrupt_recording_after_caching_leaves_cache_intact(ibm_root, tmp_path):
    ds = DVSGesture("train", ibm_root, users=[1], n_steps=12, random_start=False, cache_dir=tmp_path / "c")
    before = ds[1].counts
    (cfile,) = ds.cache.files()
    cached = cfile.read_bytes()
    aedat = ibm_root / "user01_fluorescent.aedat"
    good = aedat.read_bytes()
    aedat.write_bytes(good[:-5])
    with pytest.raises(DataError, match="truncated AEDAT packet"):
        ds[1]
    aedat.write_bytes(good)
    write_labels(ibm_root / "user01_fluorescent_labels.csv", [(3, 10_000, 20_000)], header="class,startTime_usec")
    with pytest.raises(DataError, match="lacks column"):
        ds[0]
    assert ds.cache.files() == [cfile] and cfile.read_bytes() == cached
    assert before.sum() == 2
