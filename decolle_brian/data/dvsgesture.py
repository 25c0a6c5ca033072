"""IBM DvsGesture (Amir et al. 2017): 11 hand and arm gestures recorded by a 128x128 DVS.

Two layouts are read:

* the IBM original: ``userNN_<lighting>.aedat`` (AEDAT 3.1) next to ``userNN_<lighting>_labels.csv``
  (``class,startTime_usec,endTime_usec``, classes 1..11), optional ``trials_to_train.txt`` /
  ``trials_to_test.txt``; users 1-23 train, 24-29 test. AEDAT 3.1 is parsed here with numpy because
  tonic 1.7's ``read_dvs_ibm`` fails on it and its packet reader ignores packet types, event counts
  and timestamp overflow.
* tonic's preprocessed layout (``tonic.datasets.DVSGesture``): ``ibmGestureTrain`` /
  ``ibmGestureTest`` / ``userNN_<lighting>`` / ``<class 0..10>.npy``, columns x, y, p, t (ms).

Reference preprocessing: 128x128 summed 4x4 to 32x32, 1 ms bins counted per polarity channel
(0 OFF, 1 ON), T = 500 steps from a random (seeded) start inside the gesture for training,
T = 1800 steps from the gesture start for testing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from .base import Binned, DataError, ParamError, RecordingDataset, bin_events, network_timeout, search_paths

SENSOR = (128, 128)
CLASS_NAMES = [
    "hand clapping",
    "right hand wave",
    "left hand wave",
    "right arm clockwise",
    "right arm counter-clockwise",
    "left arm clockwise",
    "left arm counter-clockwise",
    "arm roll",
    "air drums",
    "air guitar",
    "other gestures",
]
TRAIN_USERS = tuple(range(1, 24))
TEST_USERS = tuple(range(24, 30))
FOLDER_NAMES = ("dvsgesture", "DvsGesture", "DVSGesture")
TONIC_FOLDERS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
LAYOUTS = ("auto", "ibm", "tonic")
LABEL_COLUMNS = ("class", "startTime_usec", "endTime_usec")
#: Labels may reach this far (µs) past the first / last event: the sensor can be silent at the edges.
LABEL_TOLERANCE_US = 1_000_000
POLARITY_EVENT = 1
HOW_TO_GET = (
    "Get DvsGesture from IBM (https://research.ibm.com/interactive/dvsgesture/, DvsGesture.tar.gz) and "
    "extract it so that the folder holds userNN_<lighting>.aedat and userNN_<lighting>_labels.csv, or "
    "use tonic's preprocessed copy (folder holding ibmGestureTrain/ and ibmGestureTest/); pass that "
    "folder as root (or put it at <data root>/dvsgesture); or pass download=True to let tonic "
    "download its preprocessed copy."
)

# AEDAT 3.1 packet header (28 bytes, little endian) and polarity event (8 bytes).
PACKET_HEADER = np.dtype(
    [
        ("eventType", "<i2"),
        ("eventSource", "<i2"),
        ("eventSize", "<i4"),
        ("eventTSOffset", "<i4"),
        ("eventTSOverflow", "<i4"),
        ("eventCapacity", "<i4"),
        ("eventNumber", "<i4"),
        ("eventValid", "<i4"),
    ]
)
POLARITY = np.dtype([("data", "<u4"), ("timestamp", "<i4")])
EVENTS = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
_FILE_RE = re.compile(r"^user(\d+)_(.+)\.aedat$")
_FOLDER_RE = re.compile(r"^user(\d+)_(.+)$")


def read_aedat_header(path: str | Path) -> tuple[list[str], int]:
    """Header lines of an AEDAT 3.1 file and the offset of its first packet.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    lines : list of str
        Header lines without line endings (the first is ``#!AER-DAT3.1``).
    offset : int
        Byte offset of the first packet header.

    Raises
    ------
    DataError
        An empty file, not AEDAT 3.1, or no ``#!END-HEADER`` line.
    """
    path = Path(path)
    lines: list[str] = []
    with open(path, "rb") as fh:
        first = fh.readline(256)
        if not first:
            raise DataError(f"{path}: empty file (0 bytes), not an AEDAT 3.1 recording; the download or copy did "
                            "not finish -- replace it with the original one")
        version = first.rstrip(b"\r\n").decode("latin-1")
        if version != "#!AER-DAT3.1":
            shown = version if version.startswith("#!AER-DAT") else repr(first[:20])
            raise DataError(
                f"{path}: not an AEDAT 3.1 file (first line {shown}, expected '#!AER-DAT3.1'); the IBM "
                "DvsGesture recordings are AEDAT 3.1 -- replace the file with the original one"
            )
        lines.append(version)
        while True:
            line = fh.readline(1 << 16)
            if not line.startswith(b"#"):
                raise DataError(
                    f"{path}: AEDAT header has no '#!END-HEADER' line; the file is truncated or corrupt, "
                    "replace it with the original one"
                )
            text = line.rstrip(b"\r\n").decode("latin-1")
            lines.append(text)
            if text == "#!END-HEADER":
                return lines, fh.tell()


def read_aedat31(path: str | Path, drop_invalid: bool = False) -> np.ndarray:
    """Polarity events of an AEDAT 3.1 file (IBM DvsGesture format).

    Packets of other event types are skipped. Each polarity event is a ``uint32`` address
    (bit 0 validity, bit 1 polarity, bits 2-16 y, bits 17-31 x) and an ``int32`` timestamp;
    the full timestamp is ``eventTSOverflow << 31 | timestamp`` (microseconds).

    Parameters
    ----------
    path : str or Path
    drop_invalid : bool
        Drop events whose validity bit is 0. The reference readers keep them (default).

    Returns
    -------
    numpy.ndarray
        Structured array with ``int64`` fields x, y, t (µs), p (0 OFF, 1 ON), in file order.

    Raises
    ------
    DataError
        Wrong header, truncated or malformed packets, events outside the 128x128 sensor.
    """
    path = Path(path)
    _, offset = read_aedat_header(path)
    buf = np.fromfile(path, dtype=np.uint8)
    chunks: list[np.ndarray] = []
    pos = offset
    while pos < len(buf):
        if pos + PACKET_HEADER.itemsize > len(buf):
            raise DataError(f"{path}: truncated AEDAT packet header at byte {pos}; replace the file")
        h = np.frombuffer(buf, PACKET_HEADER, count=1, offset=pos)[0]
        size, cap, num = int(h["eventSize"]), int(h["eventCapacity"]), int(h["eventNumber"])
        if size <= 0 or cap < 0 or not 0 <= num <= cap:
            raise DataError(
                f"{path}: malformed AEDAT packet header at byte {pos} (eventSize={size}, "
                f"eventCapacity={cap}, eventNumber={num}); the file is corrupt, replace it"
            )
        body = pos + PACKET_HEADER.itemsize
        end = body + size * cap
        if end > len(buf):
            raise DataError(
                f"{path}: truncated AEDAT packet at byte {pos} (needs {size * cap} bytes, "
                f"{len(buf) - body} left); the file is incomplete, replace it"
            )
        if int(h["eventType"]) == POLARITY_EVENT:
            if size != POLARITY.itemsize or int(h["eventTSOffset"]) != 4:
                raise DataError(
                    f"{path}: polarity packet at byte {pos} has eventSize={size}, "
                    f"eventTSOffset={int(h['eventTSOffset'])} (expected 8 and 4); not a DVS128 AEDAT 3.1 file"
                )
            ev = np.frombuffer(buf, POLARITY, count=num, offset=body)
            a = ev["data"].astype(np.int64)
            out = np.empty(num, dtype=EVENTS)
            out["x"] = (a >> 17) & 0x7FFF
            out["y"] = (a >> 2) & 0x7FFF
            out["p"] = (a >> 1) & 1
            out["t"] = (np.int64(h["eventTSOverflow"]) << 31) | ev["timestamp"].astype(np.int64)
            chunks.append(out[(a & 1) == 1] if drop_invalid else out)
        pos = end
    events = np.concatenate(chunks) if chunks else np.empty(0, dtype=EVENTS)
    _check_sensor(path, events)
    return events


def _check_sensor(path: Path, ev: np.ndarray) -> None:
    bad = (ev["x"] < 0) | (ev["y"] < 0) | (ev["x"] >= SENSOR[1]) | (ev["y"] >= SENSOR[0])
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(
            f"{path}: {int(bad.sum())} events outside the 128x128 DVS128 sensor (first: x={ev['x'][j]}, "
            f"y={ev['y'][j]}); the file is corrupt or from another sensor, replace it"
        )


def read_labels(path: str | Path) -> np.ndarray:
    """Gesture labels of one recording (``userNN_<lighting>_labels.csv``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    numpy.ndarray
        ``int64`` array of shape ``(n, 3)``: class (1..11), start and end time (µs).

    Raises
    ------
    DataError
        Missing file, missing columns, bad rows, classes outside 1..11, start >= end, no rows.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise DataError(f"{path}: cannot read the labels file ({err}); it must sit next to its .aedat") from err
    rows = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fix = f"expected the header '{','.join(LABEL_COLUMNS)}' and one integer row per gesture"
    if not rows:
        raise DataError(f"{path}: empty labels file; {fix}")
    header = [c.strip() for c in rows[0].split(",")]
    missing = [c for c in LABEL_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}: labels file lacks column(s) {', '.join(missing)}; {fix}")
    cols = [header.index(c) for c in LABEL_COLUMNS]
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        fields = [f.strip() for f in row.split(",")]
        try:
            if len(fields) != len(header):
                raise ValueError
            cls, start, end = (int(fields[c]) for c in cols)
        except ValueError:
            raise DataError(f"{path}, line {lineno}: bad row {row!r}; {fix}") from None
        if not 1 <= cls <= len(CLASS_NAMES):
            raise DataError(f"{path}, line {lineno}: class {cls} outside 1..{len(CLASS_NAMES)}; fix the row")
        if not 0 <= start < end:
            raise DataError(f"{path}, line {lineno}: start {start} us is not before end {end} us; fix the row")
        out.append((cls, start, end))
    if not out:
        raise DataError(f"{path}: no gestures in the labels file; {fix}")
    return np.array(out, dtype=np.int64)


def labels_path(aedat: Path) -> Path:
    """The labels csv belonging to an IBM ``.aedat`` recording."""
    return aedat.with_name(aedat.stem + "_labels.csv")


def _detect(folder: Path) -> str | None:
    if not folder.is_dir():
        return None
    if any(folder.glob("user*.aedat")):
        return "ibm"
    if any((folder / f).is_dir() for f in TONIC_FOLDERS.values()):
        return "tonic"
    return None


def find_root(base: Path, layout: str = "auto") -> tuple[Path, str] | None:
    """The DvsGesture folder under ``base`` and its layout (``"ibm"`` or ``"tonic"``), or ``None``.

    Parameters
    ----------
    base : Path
    layout : {"auto", "ibm", "tonic"}

    Returns
    -------
    tuple of (Path, str) or None
    """
    for cand in [base, *(base / f for f in FOLDER_NAMES)]:
        found = _detect(cand)
        if found is not None and layout in ("auto", found):
            return cand, found
    return None


class DVSGesture(RecordingDataset):
    """IBM DvsGesture as 1 ms event-count frames, one sample per labelled gesture.

    Parameters
    ----------
    split : {"train", "test"}
    root : str or Path, optional
        Folder with the IBM ``.aedat`` / ``_labels.csv`` files or tonic's ``ibmGestureTrain`` /
        ``ibmGestureTest`` (or a data root holding ``dvsgesture/``, ``DvsGesture/``, ``DVSGesture/``).
    layout : {"auto", "ibm", "tonic"}
    n_steps : int, optional
        T; default 500 for train, 1800 for test (the reference).
    random_start : bool, optional
        Start the window at a random (seeded) step inside the gesture; default: True for train.
        Otherwise the window starts at the gesture start (label start time / first event).
    downsample : int
        Sum ``downsample x downsample`` pixel blocks (4: 128x128 -> 32x32).
    users : sequence of int, optional
        Select recordings by user number instead of the split's users (IBM: the official
        ``trials_to_<split>.txt`` if present, else users 1-23 / 24-29).
    drop_invalid : bool
        IBM layout: drop events whose AEDAT validity bit is 0 (the reference keeps them).
    max_samples : int, optional
        Keep a class-balanced subset of this size.
    seed : int
        Seed of the random window starts (with the sample index and :meth:`set_epoch`).
    cache, cache_dir, on_error
        See :class:`decolle_brian.data.base.RecordingDataset`.
    download : bool
        If the data is not found, let tonic download its preprocessed copy (needs internet).
    """

    name = "dvsgesture"
    split_keys = {"users": "each"}  # recordings chosen by user number, each split its own users
    n_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(
        self,
        split: str = "train",
        root: str | Path | None = None,
        *,
        layout: str = "auto",
        n_steps: int | None = None,
        random_start: bool | None = None,
        downsample: int = 4,
        users: list[int] | tuple[int, ...] | None = None,
        drop_invalid: bool = False,
        max_samples: int | None = None,
        seed: int = 0,
        cache: bool = True,
        cache_dir: str | Path | None = None,
        on_error: str = "raise",
        download: bool = False,
    ):
        super().__init__(split, seed, cache, cache_dir, on_error)
        if layout not in LAYOUTS:
            raise ParamError(f"invalid layout {layout!r}; valid values: {LAYOUTS}")
        if downsample < 1 or SENSOR[0] % downsample:
            raise ParamError(f"downsample must divide 128, got {downsample}")
        self.n_steps = int(n_steps) if n_steps is not None else (500 if split == "train" else 1800)
        if self.n_steps < 1:
            raise ParamError(f"n_steps must be >= 1, got {n_steps}")
        self.random_start = (split == "train") if random_start is None else bool(random_start)
        self.downsample = int(downsample)
        self.drop_invalid = bool(drop_invalid)
        self.users = tuple(sorted(int(u) for u in users)) if users is not None else None
        self.input_shape = (2, SENSOR[0] // self.downsample, SENSOR[1] // self.downsample)
        self.root, self.layout = self.locate(root, layout, download, split)
        self.source = str(self.root)
        self.params = {
            "layout": self.layout,
            "n_steps": self.n_steps,
            "random_start": self.random_start,
            "downsample": self.downsample,
            "bin_ms": 1,
            "users": self.users if self.users is not None else "official split",
            "drop_invalid": self.drop_invalid,
            "seed": self.seed,
            "max_samples": max_samples,
        }
        if self.layout == "ibm":
            self._scan_ibm()
        else:
            self._scan_tonic()

    @classmethod
    def locate(
        cls, root: str | Path | None, layout: str = "auto", download: bool = False, split: str = "train"
    ) -> tuple[Path, str]:
        """Find the DvsGesture folder and its layout (downloading tonic's copy if asked).

        Parameters
        ----------
        root : str or Path, optional
        layout : {"auto", "ibm", "tonic"}
        download : bool
        split : str

        Returns
        -------
        tuple of (Path, str)
        """
        tried = search_paths(root)
        for base in tried:
            found = find_root(base, layout)
            if found is not None:
                return found
        if download and layout != "ibm":
            return _download(tried[0] if root is not None else tried[-1], split), "tonic"
        places = "\n  ".join(str(p) for p in tried)
        raise DataError(
            f"DvsGesture data ({layout} layout) not found in, or in dvsgesture/ DvsGesture/ DVSGesture/ "
            f"under:\n  {places}\n{HOW_TO_GET}"
        )

    # -- scanning ------------------------------------------------------------------------------
    def _ibm_files(self) -> list[Path]:
        allfiles = sorted(self.root.glob("user*.aedat"))
        if self.users is not None:
            return [p for p in allfiles if (m := _FILE_RE.match(p.name)) and int(m.group(1)) in self.users]
        listing = self.root / f"trials_to_{self.split}.txt"
        if listing.is_file():
            files = []
            for name in listing.read_text().split():
                path = self.root / Path(name).name
                if path.is_file():
                    files.append(path)
                else:
                    self._bad_file(path, f"listed in {listing.name} but missing; restore it from the archive")
            return files
        users = TRAIN_USERS if self.split == "train" else TEST_USERS
        return [p for p in allfiles if (m := _FILE_RE.match(p.name)) and int(m.group(1)) in users]

    def _scan_ibm(self) -> None:
        labels: list[int] = []
        for aedat in self._ibm_files():
            csv = labels_path(aedat)
            try:
                read_aedat_header(aedat)
                rows = read_labels(csv)
            except DataError as err:  # its message names the file (the .aedat or its labels)
                self._bad_file(aedat, err)
                continue
            for k, row in enumerate(rows):
                self._items.append(((aedat, csv), k))
                labels.append(int(row[0]) - 1)
        if not self._items and not self.skipped:
            raise DataError(
                f"no DvsGesture recordings for the {self.split} split in {self.root} "
                f"(users {self.users or 'of the official split'}). {HOW_TO_GET}"
            )
        self._finish_scan(labels, "DvsGesture recordings")

    def _scan_tonic(self) -> None:
        labels: list[int] = []
        folders = TONIC_FOLDERS.values() if self.users is not None else [TONIC_FOLDERS[self.split]]
        for folder in folders:
            for sub in sorted((self.root / folder).glob("user*")):
                m = _FOLDER_RE.match(sub.name)
                if not m or (self.users is not None and int(m.group(1)) not in self.users):
                    continue
                for npy in sorted(sub.glob("*.npy"), key=lambda p: (len(p.stem), p.stem)):
                    if not npy.stem.isdigit() or int(npy.stem) >= len(CLASS_NAMES):
                        self._bad_file(npy, "file name is not a class index 0..10 (<class>.npy)")
                        continue
                    self._items.append(((npy,), 0))
                    labels.append(int(npy.stem))
        if not self._items and not self.skipped:
            raise DataError(
                f"no <class>.npy gesture files in {self.root}/{'|'.join(folders)}/userNN_<lighting>/. {HOW_TO_GET}"
            )
        self._finish_scan(labels, "DvsGesture files")

    @property
    def sample_users(self) -> np.ndarray:
        """User number of every sample (from the recording's file or folder name)."""
        names = [src[0].name if self.layout == "ibm" else src[0].parent.name for src, _ in self._items]
        return np.array([int(re.match(r"user(\d+)", n).group(1)) for n in names], dtype=np.int64)

    # -- reading -------------------------------------------------------------------------------
    def _cache_params(self) -> dict[str, Any]:
        return {"layout": self.layout, "downsample": self.downsample, "drop_invalid": self.drop_invalid}

    def _bin(self, ev: np.ndarray, t0: int, n_bins: int | None) -> Binned:
        ds = self.downsample
        return bin_events(ev["t"], ev["p"], ev["y"] // ds, ev["x"] // ds, self.input_shape, t0, n_bins)

    def _read_group(self, sources: tuple[Path, ...]) -> list[Binned]:
        if self.layout == "tonic":
            ev = read_tonic_npy(sources[0])
            return [self._bin(ev, int(ev["t"].min()), None)]
        aedat, csv = sources
        ev = read_aedat31(aedat, self.drop_invalid)
        rows = read_labels(csv)
        if len(ev) == 0:
            raise DataError(f"{aedat}: no polarity events in the recording (empty sample); replace the file")
        first, last = int(ev["t"].min()), int(ev["t"].max())
        group = []
        for lineno, (_, start, end) in enumerate(rows, start=2):
            if start < first - LABEL_TOLERANCE_US or end > last + LABEL_TOLERANCE_US:
                raise DataError(
                    f"{csv}, line {lineno}: gesture {start}..{end} us lies outside the recording "
                    f"{aedat.name} ({first}..{last} us); the labels do not belong to this file, fix them"
                )
            sel = ev[(ev["t"] >= start) & (ev["t"] < end)]
            if len(sel) == 0:
                raise DataError(
                    f"{csv}, line {lineno}: no events between {start} and {end} us in {aedat.name} "
                    "(an empty sample); fix the label times"
                )
            group.append(self._bin(sel, int(start), -(-(int(end) - int(start)) // 1000)))
        return group

    def _window_start(self, i: int, rec: Binned) -> int:
        if not self.random_start:
            return 0
        hi = max(0, rec.n_bins - self.n_steps)
        return int(self._rng(int(self._orig_index[i])).integers(0, hi + 1))


def read_tonic_npy(path: str | Path) -> np.ndarray:
    """Events of one gesture in tonic's preprocessed layout (columns x, y, p, t in ms).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    numpy.ndarray
        Structured array with ``int64`` fields x, y, t (µs), p.
    """
    path = Path(path)
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable .npy file ({err}); replace it from tonic's archive") from err
    if a.ndim != 2 or a.shape[1] != 4:
        raise DataError(f"{path}: expected an (n, 4) array of x, y, p, t events, got shape {a.shape}")
    if len(a) == 0:
        raise DataError(f"{path}: no events (an empty sample); remove or replace the file")
    ev = np.empty(len(a), dtype=EVENTS)
    ev["x"], ev["y"], ev["p"] = a[:, 0], a[:, 1], a[:, 2]
    ev["t"] = np.rint(np.asarray(a[:, 3], dtype=np.float64) * 1000)  # ms -> µs, as tonic does
    _check_sensor(path, ev)
    if not np.isin(ev["p"], (0, 1)).all():
        raise DataError(f"{path}: polarity column holds values other than 0 and 1; not tonic's DvsGesture")
    return ev


def _download(save_to: Path, split: str) -> Path:
    import tonic.datasets

    save_to = Path(save_to).expanduser()
    save_to.mkdir(parents=True, exist_ok=True)
    try:
        with network_timeout(60.0):
            tonic.datasets.DVSGesture(save_to=str(save_to), train=split == "train")
    except Exception as err:  # network or archive failure: explain instead of a deep traceback
        raise DataError(
            f"downloading DvsGesture ({split}) into {save_to} failed: {type(err).__name__}: {err}. " + HOW_TO_GET
        ) from err
    return save_to / "DVSGesture"


# ---- writing: synthetic recordings in the exact IBM format (benchmarks, tests, demos) ------------------------
AEDAT31_HEADER = (b"#!AER-DAT3.1", b"#Format: RAW", b"#Source 1: DVS128", b"#!END-HEADER")


def write_aedat31(path: str | Path, x, y, p, t_us, events_per_packet: int = 4096) -> Path:
    """Write polarity events as an AEDAT 3.1 file, the IBM DvsGesture format read by :func:`read_aedat31`.

    Each packet is the 28-byte header (eventType 1 = polarity, eventSource 1, eventSize 8, eventTSOffset 4,
    eventTSOverflow, eventCapacity, eventNumber, eventValid) followed by 8-byte events: address
    ``x << 17 | y << 2 | p << 1 | 1`` (valid) and the low 31 bits of the microsecond timestamp.
    """
    x, y, p, t_us = (np.asarray(a, dtype=np.int64) for a in (x, y, p, t_us))
    if not (len(x) == len(y) == len(p) == len(t_us)):
        raise ValueError("x, y, p and t must have the same length")
    path = Path(path)
    chunks = [b"".join(line + b"\r\n" for line in AEDAT31_HEADER)]
    for start in range(0, len(x), events_per_packet):
        sl = slice(start, start + events_per_packet)
        n = len(x[sl])
        overflow = int(t_us[sl][0] >> 31) if n else 0
        chunks.append(np.array([(1, 1, 8, 4, overflow, n, n, n)], dtype=PACKET_HEADER).tobytes())
        events = np.empty(n, dtype=[("data", "<u4"), ("ts", "<i4")])
        events["data"] = (x[sl] << 17) | (y[sl] << 2) | (p[sl] << 1) | 1
        events["ts"] = t_us[sl] & 0x7FFFFFFF
        chunks.append(events.tobytes())
    path.write_bytes(b"".join(chunks))
    return path


def write_synthetic_recording(folder: str | Path, user: int, lighting: str, gestures, rng: np.random.Generator,
                              rate_hz: float = 2e5) -> tuple[Path, Path]:
    """A synthetic IBM-format recording ``userNN_<lighting>.aedat`` + ``_labels.csv`` of moving blobs.

    ``gestures`` lists ``(class 1..11, start_us, end_us)``; in each, a blob of ON/OFF events circles at a
    class-dependent speed (Poisson events at ``rate_hz`` in total). Real recordings cannot be shipped; this
    exercises the same reader, preprocessing and network path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys, ps, ts = [], [], [], []
    for label, start, end in gestures:
        n = rng.poisson(rate_hz * (end - start) * 1e-6)
        t = np.sort(rng.integers(start, end, n))
        phase = 2 * np.pi * (t - start) * 1e-6 * (0.5 + 0.2 * label)
        xs.append(np.clip(64 + 40 * np.cos(phase) + rng.normal(0, 6, n), 0, 127).astype(np.int64))
        ys.append(np.clip(64 + 40 * np.sin(phase) + rng.normal(0, 6, n), 0, 127).astype(np.int64))
        ps.append(rng.integers(0, 2, n))
        ts.append(t)
    stem = f"user{user:02d}_{lighting}"
    aedat = write_aedat31(folder / f"{stem}.aedat", *(np.concatenate(a) for a in (xs, ys, ps, ts)))
    labels = folder / f"{stem}_labels.csv"
    labels.write_text("class,startTime_usec,endTime_usec\n" + "".join(f"{c},{s},{e}\n" for c, s, e in gestures))
    return aedat, labels
