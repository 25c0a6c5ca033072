"""The C++ standalone binary as a fork server (decolle_brian/backends/served.py).

Every run of a served binary is a child forked from one server, which computes what a fresh process computes:
outputs identical to the bit to runs of a new process each (``$DECOLLE_SERVED_BINARY=0``) over runs that change
inputs, parameters and constants; the runs start no process. A failed run says why and the next run is served by
the same server; a failure before the command (the set-up) says why too and ends the server. A changed build or
environment or a killed server gets a new server; a killed waiting child is replaced; Ctrl-C between runs is
heeded by neither the server nor its waiting child; a child reads the static arrays only while no build writes
them; a forked Python process keeps no server of its parent's from ending.
"""

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from decolle_brian.backends.served import SERVED_VARIABLE, served_main
from decolle_brian.devices import DeviceError, Simulator, build_folder_lock
from decolle_brian.network.chunks import pack_chunk
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec

SPEC = NetworkSpec(n_inputs=12, layers=(DenseLayerSpec(10), DenseLayerSpec(8)), n_classes=3, mode="event",
                   learning=LearningSpec(optimizer="sgd", lr=0.05, dropout=0.5))
STEPS = 40


@pytest.fixture(scope="module")
def sim():
    return Simulator(SPEC, STEPS)


def _inputs(seed: int):
    rng = np.random.default_rng(seed)
    samples = [(rng.poisson(0.5, (STEPS // 2, SPEC.n_inputs)).astype(float), k) for k in (0, 2)]
    inputs, _ = pack_chunk(samples, STEPS, SPEC.n_classes, lr=0.05, burnin=0, learn=True, dropout=0.5,
                           layer_sizes=[10, 8], rng=rng)
    return inputs


def _runs(sim, count: int = 3) -> list[list[np.ndarray]]:
    """``count`` runs, each from the last one's parameters, with new inputs and other neuron constants."""
    params = init_params(SPEC, np.random.default_rng(0))
    arrays = []
    for run in range(count):
        neuron = replace(SPEC.neuron, alpha=0.97 - 0.01 * run)
        outputs = sim.run_chunk(_inputs(run), params, neuron)
        params = {key: np.array(value) for key, value in outputs.params.items()}
        arrays.append([params[key] for key in sorted(params)] + outputs.y + outputs.n_spikes)
    return arrays


def _same(runs, others) -> bool:
    """Whether two lists of runs' arrays are equal to the bit, dtypes included."""
    if len(runs) != len(others) or any(len(run) != len(other) for run, other in zip(runs, others, strict=True)):
        return False
    pairs = [pair for run, other in zip(runs, others, strict=True) for pair in zip(run, other, strict=True)]
    return all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in pairs)


def _ended(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" in status.read_text()
    except FileNotFoundError:
        return True


def _wait_until(condition) -> None:
    for _ in range(500):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def _server(sim):
    server = sim.backend._server
    assert server is not None and server.alive
    return server


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _waiting_child(server) -> int:
    """The child forked for the next run, waiting for its command: the one whose output is the pending file (the
    last run's child, ending, writes to that run's output)."""
    pending = os.path.realpath(server.pending_output)
    found = []

    def waiting() -> bool:
        for child in _children(server._process.pid):
            try:
                if os.path.realpath(f"/proc/{child}/fd/1") == pending:
                    found.append(child)
                    return True
            except OSError:
                continue
        return False

    _wait_until(waiting)
    return found[0]


@pytest.mark.standalone
def test_served_runs_equal_fresh_processes_to_the_bit(sim, monkeypatch):
    served = _runs(sim)
    server = _server(sim)
    assert _same(_runs(sim), served)
    assert _server(sim) is server  # the same server for every run: no process started
    monkeypatch.setenv(SERVED_VARIABLE, "0")
    assert not sim.backend.serving()
    fresh = _runs(sim)
    assert _same(served, fresh)
    # the runs differ from one another: the comparison is not of constants
    assert not _same(fresh[:1], fresh[1:2]) and not _same(fresh[1:2], fresh[2:])


@pytest.mark.standalone
def test_a_failed_run_says_why_and_the_server_goes_on(sim, monkeypatch):
    expected = _runs(sim, 1)
    server = _server(sim)
    command_line = type(sim.backend).command_line

    def missing_file(self, run_args, files):
        arguments = command_line(self, run_args, files)
        return [f"{argument.split('=')[0]}=results-none/missing.dat" if argument.startswith("forward1.w=")
                else argument for argument in arguments]

    monkeypatch.setattr(type(sim.backend), "command_line", missing_file)
    with pytest.raises(DeviceError, match="missing.dat"):
        _runs(sim, 1)
    monkeypatch.undo()
    assert _same(_runs(sim, 1), expected)
    assert _server(sim) is server  # the failed run's child is gone; the server forked the next


@pytest.mark.standalone
def test_a_failure_before_the_command_is_reported_with_its_message(sim):
    _runs(sim, 1)
    static = Path(sim.backend.build_dir) / "static_arrays"
    name = sorted(path for path in static.iterdir() if path.is_file())[0]
    saved = name.read_bytes()
    server = _server(sim)
    name.unlink()  # the folder changed: a new server, whose first child stops loading the static arrays
    try:
        with pytest.raises(DeviceError, match="static array"):
            _runs(sim, 1)
    finally:
        name.write_bytes(saved)
    _runs(sim, 1)
    assert _server(sim) is not server


@pytest.mark.standalone
def test_a_changed_binary_or_environment_gets_a_new_server(sim, monkeypatch):
    _runs(sim, 1)
    first = _server(sim)
    main = Path(sim.backend.build_dir) / "main"
    status = main.stat()
    os.utime(main, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000))
    _runs(sim, 1)
    second = _server(sim)
    assert second is not first and not first.alive
    monkeypatch.setenv("DECOLLE_SERVED_TEST", "1")  # the binary may read any variable: it gets the new ones
    _runs(sim, 1)
    assert _server(sim) is not second


@pytest.mark.standalone
def test_ctrl_c_between_runs_and_a_killed_server(sim):
    expected = _runs(sim, 2)
    server = _server(sim)
    os.kill(server._process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group: both ignore it
    os.kill(_waiting_child(server), signal.SIGINT)
    time.sleep(0.1)
    assert _same(_runs(sim, 2), expected)
    assert _server(sim) is server
    os.kill(server._process.pid, signal.SIGKILL)
    server._process.wait()
    assert _same(_runs(sim, 2), expected)
    assert _server(sim) is not server


@pytest.mark.standalone
def test_closing_a_server_ends_it_and_its_waiting_child(sim):
    _runs(sim, 1)
    server = _server(sim)
    child = _waiting_child(server)
    server.close()
    assert server._process.returncode == 0 and not server.alive
    _wait_until(lambda: _ended(child))


def test_a_main_without_the_expected_lines_is_not_served():
    main = ("int main(int argc, char **argv)\n{\n\tstd::signal(SIGINT, _int_handler);\n"
            "        set_from_command_line(args);\n}\n")
    served = served_main(main)
    assert served is not None and "static int _decolle_main(int argc, char **argv)" in served
    assert served.count("int main(int argc, char** argv)") == 1  # the server's own main
    assert served_main(main.replace("        set_from_command_line(args);\n", "")) is None
    assert served_main(main + main) is None


@pytest.mark.standalone
def test_a_killed_waiting_child_is_replaced(sim):
    expected = _runs(sim, 2)
    server = _server(sim)
    victim = _waiting_child(server)
    os.kill(victim, signal.SIGKILL)  # e.g. the kernel's out-of-memory killer
    _wait_until(lambda: _ended(victim))  # one killed as its command comes is a failed run, as a fresh one would be
    assert _same(_runs(sim, 2), expected)
    assert _server(sim) is server


@pytest.mark.standalone
def test_three_waiting_children_killed_in_a_row_end_the_server(sim):
    expected = _runs(sim, 1)
    server = _server(sim)
    for _ in range(3):
        victim = _waiting_child(server) if server.alive else None
        if victim is not None:
            os.kill(victim, signal.SIGKILL)
            _wait_until(lambda victim=victim: _ended(victim))
    _wait_until(lambda: server._process.poll() is not None)  # something kills its runs: it stops forking
    assert _same(_runs(sim, 1), expected)
    assert _server(sim) is not server


@pytest.mark.standalone
def test_an_interrupt_while_a_run_waits_kills_the_server(sim, monkeypatch):
    expected = _runs(sim, 1)
    server = _server(sim)

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(server), "_status", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _runs(sim, 1)
    monkeypatch.undo()
    assert not server.alive and server._process.returncode == -signal.SIGKILL
    assert _same(_runs(sim, 1), expected)


@pytest.mark.standalone
def test_a_child_reads_the_static_arrays_only_while_no_build_writes_them(sim):
    """A build rewriting a static array in place, leaving its inode, size and time as they were (a copy that keeps
    file times): the server cannot see it, so a child must not read the file half written."""
    expected = _runs(sim, 2)
    server = _server(sim)
    static = Path(sim.backend.build_dir) / "static_arrays"
    path = static / "_static_array__array_readout_synapses1_sources"  # read by the set-up (a run argument's is not)
    content, status = path.read_bytes(), path.stat()
    assert len(content) > 0
    waiting = _waiting_child(server)
    with build_folder_lock(sim.backend.build_dir, exclusive=True):
        try:
            path.write_bytes(b"\0" * len(content))  # half way through the build's writes
            os.kill(waiting, signal.SIGKILL)  # its successor, forked at once, starts during the build
            time.sleep(0.3)
        finally:
            path.write_bytes(content)
            os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert _same(_runs(sim, 2), expected)
    assert _server(sim) is server


@pytest.mark.standalone
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_process_keeps_no_server_from_ending(sim):
    _runs(sim, 1)
    server = _server(sim)
    pid = os.fork()
    if pid == 0:  # holds the parent's pipe ends unless the fork hook closed them
        time.sleep(3)
        os._exit(0)
    try:
        started = time.perf_counter()
        server.close()
        assert time.perf_counter() - started < 2 and server._process.returncode == 0
    finally:
        os.waitpid(pid, 0)
