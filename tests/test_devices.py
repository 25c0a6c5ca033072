"""The standalone run layer: one build folder used by several processes at once (two seeds of one experiment in
two terminals: built by both at once, then run by both at once; one building while the other runs), and the
files a run passes to the binary."""

import multiprocessing
import os
import queue as queues
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from brian2 import set_device
from brian2.devices.device import all_devices

from decolle_brian.backends import cpp_standalone
from decolle_brian.backends.param_files import KEPT_FOLDER
from decolle_brian.backends.read_back import DEVICE_NAME
from decolle_brian.devices import DeviceError, Simulator, build_folder_lock
from decolle_brian.network.chunks import pack_chunk
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec

SPEC = NetworkSpec(n_inputs=12, layers=(DenseLayerSpec(10),), n_classes=3,
                   learning=LearningSpec(optimizer="sgd", lr=0.05, dropout=0.0))
STEPS = 400  # long enough that the two processes' runs overlap


def _run(build_dir, seed, repeats=1, chain=False):
    """Learn one chunk from seed-dependent inputs; returns the learned weights."""
    return _learn(Simulator(SPEC, STEPS, build_dir=build_dir), seed, repeats, chain)


def _learn(sim, seed, repeats=1, chain=False):
    """Learn one chunk ``repeats`` times, each from the same parameters or (``chain``) from the last run's."""
    rng = np.random.default_rng(seed)
    params = init_params(SPEC, np.random.default_rng(0))
    counts = rng.poisson(0.4, (STEPS, SPEC.n_inputs)).astype(float)
    inputs, _ = pack_chunk([(counts, seed % 3)], STEPS, 3, lr=0.05, burnin=0, learn=True, dropout=0.0,
                           layer_sizes=[10])
    for _ in range(repeats):
        out = sim.run_chunk(inputs, params)
        params = out.params if chain else params
    return out.params["layer1.W"]


def _worker(build_dir, seed, queue):
    queue.put((seed, _run(build_dir, seed, repeats=20)))


def _build_worker(build_dir, seed, barrier, queue):
    """Build (or find built) the network when the other worker does, then learn; report when it built."""
    barrier.wait(timeout=120)  # imports done: both start building now
    started = time.time()
    sim = Simulator(SPEC, STEPS, build_dir=build_dir)
    queue.put((seed, started, time.time(), _learn(sim, seed)))


def _collect(workers, queue, n):
    got = []
    while len(got) < n:
        try:
            got.append(queue.get(timeout=5))
        except queues.Empty:  # a worker that died gives nothing: fail instead of waiting
            assert all(w.is_alive() or w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    return got


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    """One build folder for this module's tests (the network compiles once, in the first test)."""
    return tmp_path_factory.mktemp("devices") / "build"


@pytest.mark.standalone
def test_simultaneous_builds_of_an_empty_folder_compile_once(build_dir):
    """Two processes build one structure in an empty folder at the same time: the lock lets one compile while
    the other waits, which then finds the build up to date and compiles nothing; both learn correctly."""
    assert not build_dir.exists()
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_build_worker, args=(build_dir, seed, barrier, queue)) for seed in (1, 2)]
    for w in workers:
        w.start()
    got = sorted(_collect(workers, queue, 2), key=lambda r: r[2])  # (seed, started, built, weights) by build end
    (_, _, first_end, _), (_, second_start, second_end, _) = got
    compiled = [build_dir / "main", *build_dir.rglob("*.o")]
    last_write = max(p.stat().st_mtime for p in compiled)
    # the binary appeared after the second process had started building: it built at the same time ...
    assert second_start < (build_dir / "main").stat().st_mtime
    # ... yet every object file and the binary were written by the time the first finished: the second
    # compiled nothing (it waited for the lock, then make found everything up to date)
    assert last_write <= first_end + 0.05, f"written {last_write - first_end:.2f} s after the first build ended"
    assert second_end >= first_end
    expected = {seed: _run(build_dir, seed) for seed in (1, 2)}  # one after the other, in this process
    assert not np.array_equal(expected[1], expected[2])
    for seed, _, _, weights in got:
        np.testing.assert_array_equal(weights, expected[seed])


@pytest.mark.standalone
def test_concurrent_processes_share_a_build_folder(build_dir):
    expected = {seed: _run(build_dir, seed) for seed in (1, 2)}  # one after the other (also builds)
    assert not np.array_equal(expected[1], expected[2])
    context = multiprocessing.get_context("spawn")  # fresh processes, as two terminals
    queue = context.Queue()
    workers = [context.Process(target=_worker, args=(build_dir, seed, queue)) for seed in (1, 2)]
    for w in workers:
        w.start()
    got = dict(_collect(workers, queue, len(workers)))
    for seed in (1, 2):  # each process read its own results, never the other's
        np.testing.assert_array_equal(got[seed], expected[seed])


@pytest.mark.standalone
def test_a_run_waits_while_another_process_builds_its_folder(build_dir):
    """Every build truncates and rewrites the folder's static arrays (same content or not), and the binary reads
    them at every start: a run started mid-rewrite read torn arrays and learned different weights, silently
    (a resume of tests/test_experiment.py diverged while tests/test_sweep.py built the same structure). A run
    holds the folder's lock shared and a build holds it exclusively, so the run waits for the whole build."""
    sim = Simulator(SPEC, STEPS, build_dir=build_dir)
    expected = _learn(sim, 1)
    arrays = {path: path.read_bytes() for path in (build_dir / "static_arrays").glob("*")}
    outcome = []

    def run():
        try:
            outcome.append(_learn(sim, 1))
        except Exception as error:  # a torn read may also end in NaN weights
            outcome.append(error)

    runner = threading.Thread(target=run)
    with build_folder_lock(build_dir, exclusive=True):  # another process's build, half way through its writes
        for path in arrays:
            path.write_bytes(b"")
        runner.start()
        runner.join(timeout=2)  # time for a run that does not wait to read the torn arrays
        waited = runner.is_alive()
        for path, content in arrays.items():
            path.write_bytes(content)
    runner.join(timeout=120)
    assert waited, "the run did not wait for the build in progress"
    assert not isinstance(outcome[0], Exception), outcome[0]
    np.testing.assert_array_equal(outcome[0], expected)


@pytest.mark.standalone
def test_a_second_simulator_in_one_process_reuses_the_binary(build_dir):
    """Brian names new objects after the live ones: had the last network's objects outlived it, the next
    network's would be renamed (..._codeobject_1), its code would differ and everything would recompile."""
    Simulator(SPEC, STEPS, build_dir=build_dir)
    binary = build_dir / "main"
    built = binary.stat().st_mtime_ns
    arrays = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in (build_dir / "static_arrays").iterdir()}
    Simulator(SPEC, STEPS, build_dir=build_dir)
    assert binary.stat().st_mtime_ns == built
    assert not list((build_dir / "code_objects").glob("*_1.cpp"))
    # nor were the static arrays written again (atomic_arrays: only changed ones are)
    assert {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in arrays} == arrays


@pytest.mark.standalone
def test_a_simulator_after_another_device_was_made_current(build_dir):
    """A C++ run, then another device made current (as brian2cuda's set-up or a user's set_device does), then
    a new C++ network: it must start from a fresh C++ device, not from the last run's results and objects."""
    expected = _run(build_dir, 1)
    set_device("runtime")
    np.testing.assert_array_equal(_run(build_dir, 1), expected)


def test_stale_results_folders_are_removed(tmp_path):
    dead = multiprocessing.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    for pid in (dead.pid, os.getpid()):
        (tmp_path / f"{cpp_standalone.RESULTS_PREFIX}{pid}").mkdir()
    cpp_standalone.remove_stale_results(tmp_path)
    assert not (tmp_path / f"{cpp_standalone.RESULTS_PREFIX}{dead.pid}").exists()
    assert (tmp_path / f"{cpp_standalone.RESULTS_PREFIX}{os.getpid()}").exists()


@pytest.mark.skipif(cpp_standalone.memory_root() is None, reason="this system has no writable /dev/shm")
def test_results_folders_in_memory_are_links_removed_with_their_folder(tmp_path):
    """backends/cpp_standalone.py, make_results_folder: results go to a folder in /dev/shm through a link in the
    build folder; a stale link goes with the folder it names, and so does the process's own when it ends."""
    dead = multiprocessing.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    folders = {pid: tmp_path / f"{cpp_standalone.RESULTS_PREFIX}{pid}" for pid in (dead.pid, os.getpid())}
    for folder in folders.values():
        cpp_standalone.make_results_folder(folder, in_memory=True)
        assert folder.is_symlink() and folder.resolve().parent == cpp_standalone.memory_root()
        (folder / "x").write_bytes(b"x")
    targets = {pid: folder.resolve() for pid, folder in folders.items()}
    cpp_standalone.remove_stale_results(tmp_path)
    assert not folders[dead.pid].is_symlink() and not targets[dead.pid].exists()
    assert (folders[os.getpid()] / "x").is_file()
    cpp_standalone.remove_results_folder(folders[os.getpid()], owner=os.getpid() + 1)  # not the owner: kept
    assert targets[os.getpid()].is_dir()
    cpp_standalone.remove_results_folder(folders[os.getpid()], owner=os.getpid())  # what runs at exit
    assert not folders[os.getpid()].is_symlink() and not targets[os.getpid()].exists()
    cpp_standalone.make_results_folder(folders[os.getpid()], in_memory=False)  # the plain folder
    assert folders[os.getpid()].is_dir() and not folders[os.getpid()].is_symlink()


@pytest.mark.skipif(cpp_standalone.memory_root() is None, reason="this system has no writable /dev/shm")
def test_results_stay_in_the_build_folder_when_memory_is_not_safe_or_not_wanted(tmp_path, monkeypatch):
    root = cpp_standalone.memory_root()
    dead = multiprocessing.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    orphan = root / f"build-{cpp_standalone.RESULTS_PREFIX}{dead.pid}-abc123"  # its process killed: no exit handler
    orphan.mkdir()
    cpp_standalone.make_results_folder(tmp_path / f"{cpp_standalone.RESULTS_PREFIX}{os.getpid()}", in_memory=True)
    assert not orphan.exists()
    monkeypatch.setenv(cpp_standalone.MEMORY_VARIABLE, "0")
    assert cpp_standalone.memory_root() is None
    monkeypatch.delenv(cpp_standalone.MEMORY_VARIABLE)
    monkeypatch.setattr(cpp_standalone, "MEMORY_MIN_FREE", 1 << 60)  # a small /dev/shm (a container's 64 MB)
    assert cpp_standalone.memory_root() is None
    monkeypatch.undo()
    root.chmod(0o777)  # /dev/shm is every user's: a folder others may write is not used
    try:
        assert cpp_standalone.memory_root() is None
    finally:
        root.chmod(0o700)
    assert cpp_standalone.memory_root() == root


def test_kept_files_have_names_of_their_own_and_a_forked_process_removes_none(tmp_path, monkeypatch):
    from decolle_brian.backends.param_files import KeptFiles

    kept = []
    for owner in (KeptFiles(tmp_path / "params"), KeptFiles(tmp_path / "params")):  # two networks, one folder
        result = tmp_path / "_array_w"
        np.arange(4.0).tofile(result)
        values, path = owner.keep(result, np.float64)
        kept.append((owner, values, path))
    assert kept[0][2] != kept[1][2] and all(path.is_file() for *_, path in kept)
    owner, values, path = kept[0]
    owner.new_run()  # no longer the latest run's: goes when its mapping goes
    monkeypatch.setattr(os, "getpid", lambda: -1)  # the mapping freed in a forked process: the parent's file stays
    del values, kept[0]
    assert path.is_file()
    monkeypatch.undo()


@pytest.mark.standalone
def test_run_argument_files_survive_lower_casing(build_dir, monkeypatch):
    """brian2cuda's binary lower-cases every NAME=VALUE value before use (to read true/false), file paths too:
    a path with an upper-case letter (the readout weights G) is not found there and the array silently keeps
    its old values. The files a run names must therefore exist under their lower-cased names."""
    seen, kept = [], []

    def spy(*args, run_args=(), **kwargs):
        for argument in run_args:
            name, value = argument.split("=", 1)
            if "/" in value:  # a file (results-<pid>/...: inputs written, or parameters kept from a run)
                seen.append(name)
                assert (Path(device.project_dir) / value.lower()).is_file(), argument
                kept.append(f"/{KEPT_FOLDER}/" in value)
        return original(*args, run_args=run_args, **kwargs)

    device = all_devices[DEVICE_NAME]  # the device object every C++ Simulator of this process runs on
    original = device.run
    monkeypatch.setattr(device, "run", spy)
    _run(build_dir, seed=1, repeats=2, chain=True)  # the second run names the files the first one wrote
    assert seen.count("readout_synapses1.G") == 2  # the upper-case variable went through a file, then a kept one
    assert any(kept)


@pytest.mark.standalone
def test_a_run_the_binary_stopped_early_is_a_failed_run(build_dir, monkeypatch):
    """A SIGINT that reaches the binary (Ctrl-C sends it to the whole process group) ends its network run early
    and the binary exits 0 with shorter monitors; Brian records the completed fraction (here 0.18, as measured
    for a binary sent SIGINT 70 ms into a 16-sample event run). That run must fail as a RuntimeError (the
    training loop then drops the chunk and stops with its checkpoint), not hand back truncated outputs or fail
    reading them; the next run is whole."""
    expected = _run(build_dir, 2)

    def stopped_early(*args, **kwargs):
        original(*args, **kwargs)
        device._last_run_completed_fraction = 0.18

    device = all_devices[DEVICE_NAME]
    original = device.run
    monkeypatch.setattr(device, "run", stopped_early)
    with pytest.raises(DeviceError, match="stopped after 18% of its run") as failure:
        _run(build_dir, 2)
    assert isinstance(failure.value, RuntimeError)
    monkeypatch.setattr(device, "run", original)
    np.testing.assert_array_equal(_run(build_dir, 2), expected)


@pytest.mark.standalone
def test_profile_of_a_standalone_run():
    """A profiled binary writes its profile into the run's own results folder (results-<pid>); reading it from
    Brian's fixed ``results/`` raised "No profiling info collected" (benchmarks/conv_dvsgesture.py)."""
    sim = Simulator(SPEC, 20, profile=True)
    assert sim.build_dir.name.endswith("-profile")  # compiled in: not the folder of the unprofiled binary
    rng = np.random.default_rng(0)
    inputs, _ = pack_chunk([(rng.poisson(0.4, (20, SPEC.n_inputs)).astype(float), 1)], 20, 3, lr=0.05, burnin=0,
                           learn=True, dropout=0.0, layer_sizes=[10])
    sim.run_chunk(inputs, init_params(SPEC, rng))
    info = sim.profiling_info()
    names = [name for name, _ in info]
    # Brian suffixes a name still taken by an object of an earlier test in this process (_1, _2, ...)
    assert any(name.startswith("forward1") for name in names), names
    assert any(name.startswith("readout1_err_codeobject") for name in names), names
    times = [float(t) for _, t in info]
    assert times == sorted(times, reverse=True) and min(times) >= 0 and max(times) > 0


def test_profile_needs_profile_true():
    sim = Simulator(SPEC, 12, device="runtime")
    rng = np.random.default_rng(0)
    inputs, _ = pack_chunk([(rng.poisson(0.4, (12, SPEC.n_inputs)).astype(float), 1)], 12, 3, lr=0.05, burnin=0,
                           learn=True, dropout=0.0, layer_sizes=[10])
    sim.run_chunk(inputs, init_params(SPEC, rng))
    with pytest.raises(ValueError, match="profile=True"):
        sim.profiling_info()


# ---- static arrays written whole (decolle_brian.backends.atomic_arrays) -------------------------------------------
class _ArraysDevice:
    """Brian's write_static_arrays in short: each file of <directory>/static_arrays truncated and written; with
    ``fail_after``, the build stops (is killed) after that many files."""

    def __init__(self, arrays, fail_after=None):
        self.arrays, self.fail_after = arrays, fail_after

    def write_static_arrays(self, directory):
        for index, (name, content) in enumerate(self.arrays.items()):
            if index == self.fail_after:
                raise KeyboardInterrupt
            (Path(directory) / "static_arrays" / name).write_bytes(content)


def _folder(tmp_path, files):
    (tmp_path / "static_arrays").mkdir()
    for name, content in files.items():
        (tmp_path / "static_arrays" / name).write_bytes(content)
    return {name: (tmp_path / "static_arrays" / name).stat().st_ino for name in files}


def test_static_arrays_are_replaced_whole_and_only_when_changed(tmp_path):
    from decolle_brian.backends import atomic_arrays  # noqa: PLC0415

    inodes = _folder(tmp_path, {"changed": b"old", "same": b"same"})
    (tmp_path / atomic_arrays.STAGING).mkdir()  # left by a build killed in its staging folder
    device = _ArraysDevice({"changed": b"new", "same": b"same", "added": b"added"})
    with atomic_arrays.atomic_static_arrays(device):
        device.write_static_arrays(str(tmp_path))
    arrays = tmp_path / "static_arrays"
    assert {p.name: p.read_bytes() for p in arrays.iterdir()} == {"changed": b"new", "same": b"same",
                                                                   "added": b"added"}
    assert (arrays / "same").stat().st_ino == inodes["same"]  # unchanged: not written at all
    assert (arrays / "changed").stat().st_ino != inodes["changed"]  # changed: a new file renamed over the old
    assert not (tmp_path / atomic_arrays.STAGING).exists()
    assert device.write_static_arrays.__func__ is _ArraysDevice.write_static_arrays  # Brian's own method again


def test_a_build_stopped_half_way_leaves_the_static_arrays_whole(tmp_path):
    """Brian truncated each file and wrote it in place: a build stopped between two writes left a torn or empty
    file that the binary then read at every start, silently."""
    from decolle_brian.backends import atomic_arrays  # noqa: PLC0415

    _folder(tmp_path, {"first": b"old first", "second": b"old second"})
    device = _ArraysDevice({"first": b"new first", "second": b"new second"}, fail_after=1)
    with pytest.raises(KeyboardInterrupt), atomic_arrays.atomic_static_arrays(device):
        device.write_static_arrays(str(tmp_path))
    arrays = tmp_path / "static_arrays"
    assert {p.name: p.read_bytes() for p in arrays.iterdir()} == {"first": b"old first", "second": b"old second"}
    assert not (tmp_path / atomic_arrays.STAGING).exists()


# ---- the precompiled objects.h (decolle_brian.backends.precompiled_header) ------------------------------------
class _MakeDevice:
    """Brian's compile_source in short: make with the make arguments of Brian's preferences."""

    def compile_source(self, directory, compiler, debug, clean):
        from brian2 import prefs  # noqa: PLC0415

        args = " ".join(prefs.devices.cpp_standalone.extra_make_args_unix)
        assert os.system(f"cd {directory} && make -s {args} >/dev/null") == 0


@pytest.mark.standalone
def test_a_compile_uses_a_fresh_precompiled_header_and_removes_it(tmp_path, monkeypatch):
    from decolle_brian.backends import precompiled_header  # noqa: PLC0415

    monkeypatch.delenv("CXX", raising=False)
    (tmp_path / "objects.h").write_text("#ifndef OBJECTS_H\n#define OBJECTS_H\n#include <vector>\n"
                                        "struct Thing { std::vector<int> v; };\n#endif\n")  # guarded, as Brian's
    (tmp_path / "a.cpp").write_text('#include "objects.h"\nint main() { Thing t; return (int)t.v.size(); }\n')
    (tmp_path / "makefile").write_text(
        "CXXFLAGS = -c -O0 -I.\nall: main\nmain: a.o\n\t$(CXX) a.o -o main\n"
        "a.o: a.cpp objects.h makefile\n\t$(CXX) $(CXXFLAGS) a.cpp -o a.o\n"
        "\techo '$(CXX)' > cxx.txt\n\tls objects.h.gch > gch.txt\n")
    device = _MakeDevice()
    with precompiled_header.precompiled_objects_header(device):
        device.compile_source(str(tmp_path), "gcc", False, False)
    assert (tmp_path / "main").is_file() and os.system(str(tmp_path / "main")) == 0
    assert (tmp_path / "cxx.txt").read_text().split() == ["g++", "-include", "objects.h", "-Winvalid-pch"]
    assert (tmp_path / "gch.txt").read_text().strip() == "objects.h.gch"  # there while make compiled
    assert not (tmp_path / "objects.h.gch").exists()  # made fresh for every compile: never stale
    assert device.compile_source.__func__ is _MakeDevice.compile_source  # the device's own method again

    (tmp_path / "cxx.txt").unlink()
    precompiled = []
    monkeypatch.setattr(precompiled_header, "_precompile", lambda *args: precompiled.append(args))
    with precompiled_header.precompiled_objects_header(device):
        device.compile_source(str(tmp_path), "gcc", False, False)  # up to date: make -q, nothing compiled
    assert not precompiled and not (tmp_path / "cxx.txt").exists()
