"""The C++ standalone binary writes only the arrays read back after a run (decolle_brian/backends/read_back.py).

A small event network with every kind of monitor (layer and input probes, a synapse weight with the event
mode's pending sums behind it, spike monitors): the results folder holds exactly the files of the chosen
arrays, far fewer than Brian's every array; every output is identical to a run that writes every array;
reading an array that was not written raises an error naming it and the fix.
"""

import copy
import gc
import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from brian2 import get_device

from decolle_brian.backends.cpp_standalone import (
    ARGUMENTS_FOLDER,
    HUGE_PAGE_TUNABLE,
    StagedArray,
    clear_results,
    huge_page_tunables,
)
from decolle_brian.backends.param_files import KEPT_FOLDER, KeptFiles, file_work
from decolle_brian.backends.read_back import RUN_FILES, function_span
from decolle_brian.devices import DeviceError, Simulator
from decolle_brian.network.builder import Probes
from decolle_brian.network.chunks import pack_chunk
from decolle_brian.network.params import check_params, init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec

SPEC = NetworkSpec(n_inputs=12, layers=(DenseLayerSpec(10), DenseLayerSpec(8)), n_classes=3, mode="event",
                   learning=LearningSpec(optimizer="sgd", lr=0.05, dropout=0.5))
PROBES = Probes(variables=("u", "s", "delta"), input_variables=("p",), synapses=(((0, 1), (3, 2)),), spikes=True)
STEPS = 40


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("read_back")
    start = Path.cwd()
    os.chdir(folder.parent)  # given relative to the working directory, as a user's --set or DECOLLE_BUILD_DIR may
    try:
        return Simulator(SPEC, STEPS, build_dir=Path(folder.name), probes=PROBES)
    finally:
        os.chdir(start)


def _run(sim, params=None):
    rng = np.random.default_rng(3)
    samples = [(rng.poisson(0.5, (STEPS // 2, SPEC.n_inputs)).astype(float), k) for k in (0, 2)]
    inputs, _ = pack_chunk(samples, STEPS, SPEC.n_classes, lr=0.05, burnin=0, learn=True, dropout=0.5,
                           layer_sizes=[10, 8], rng=np.random.default_rng(4))
    return sim.run_chunk(inputs, init_params(SPEC, np.random.default_rng(0)) if params is None else params)


def _results(sim) -> set[str]:
    """Names of the files the last run wrote: those in the results folder, and the parameter files moved from it
    since (backends/param_files.py)."""
    device = get_device()
    moved = {device.get_array_filename(var) for var in device.moved}
    return {path.name for path in sim.backend.results_folder().iterdir() if path.is_file()} | moved


def _arrays(outputs) -> list[np.ndarray]:
    """Every array of a run's outputs, in a fixed order."""
    arrays = [outputs.params[key] for key in sorted(outputs.params)] + outputs.y + outputs.n_spikes
    arrays += [probes[name] for probes in outputs.probes for name in sorted(probes)]
    arrays += [outputs.input_probes[name] for name in sorted(outputs.input_probes)]
    arrays += [w for w in outputs.synapse_w if w is not None] + [a for pair in outputs.spikes for a in pair]
    return arrays


@pytest.mark.standalone
def test_only_the_arrays_read_back_are_written_and_the_outputs_are_unchanged(sim):
    chosen = _run(sim)
    written = _results(sim)
    expected = set(get_device().files_written()) - {"profiling_info.txt"}  # not a profiled build
    assert written == expected
    sim.write_all_results = True
    try:
        every = _run(sim)
    finally:
        sim.write_all_results = False
    everything = _results(sim)
    assert written < everything and len(written) < len(everything) / 2, (len(written), len(everything))
    assert any("forward1__synaptic_pre" in name for name in everything - written)  # indices nobody reads
    for a, b in zip(_arrays(chosen), _arrays(every), strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(len(probes) for probes in chosen.probes) and chosen.input_probes and chosen.synapse_w[0] is not None
    assert len(chosen.spikes[0][0]) > 0
    # a run that writes the chosen arrays again after one that wrote all: the folder holds those only
    _run(sim)
    assert _results(sim) == expected


@pytest.mark.standalone
def test_reading_an_array_not_written_says_which_and_how(sim):
    _run(sim)
    forward = sim.net.layers[0].forward
    assert len(forward) == SPEC.n_inputs * 10  # synapse counts are read back: known once the binary has run
    with pytest.raises(DeviceError, match=r"'forward1\._synaptic_pre'.*probe.*write_all_results"):
        forward.variables["_synaptic_pre"].get_value()
    sim.write_all_results = True
    try:
        _run(sim)
        assert len(forward.variables["_synaptic_pre"].get_value()) == SPEC.n_inputs * 10
    finally:
        sim.write_all_results = False
    _run(sim)  # not written again: never the file of the earlier run
    with pytest.raises(DeviceError, match="_synaptic_pre"):
        forward.variables["_synaptic_pre"].get_value()


@pytest.mark.standalone
def test_all_to_all_synapses_are_created_in_place_in_brians_generator_order(sim):
    # backends/templates/all_to_all: the index arrays filled in place must be what Brian's generator makes
    _run(sim)
    code = sim.build_dir / "code_objects"
    sim.write_all_results = True
    try:
        _run(sim)
        for forward in (layer.forward for layer in sim.net.layers):
            n_pre, n_post = len(forward.source), len(forward.target)
            text = (code / f"{forward.name}_synapses_create_generator_codeobject.cpp").read_text()
            assert "filled in place" in text and "push_back" not in text, forward.name
            values = {name: forward.variables[name].get_value()
                      for name in ("_synaptic_pre", "_synaptic_post", "N_incoming", "N_outgoing", "N")}
            np.testing.assert_array_equal(values["_synaptic_pre"], np.repeat(np.arange(n_pre), n_post))
            np.testing.assert_array_equal(values["_synaptic_post"], np.tile(np.arange(n_post), n_pre))
            np.testing.assert_array_equal(values["N_incoming"], np.full(n_post, n_pre))
            np.testing.assert_array_equal(values["N_outgoing"], np.full(n_pre, n_post))
            assert int(np.asarray(values["N"]).item()) == n_pre * n_post
            assert len(forward.variables["w"].get_value()) == n_pre * n_post  # every synaptic variable resized
    finally:
        sim.write_all_results = False


@pytest.mark.standalone
def test_every_monitor_and_parameter_is_read_back(sim):
    """The declared set: each parameter binding and each monitor's recorded variables, the event mode's pending
    sums (read to give the weight in use) included."""
    pairs = {(owner.name, name) for owner, name in sim.net.read_back()}
    assert {("forward1", "w"), ("forward2", "w"), ("readout_synapses1", "G"), ("layer1", "b")} <= pairs
    assert {("readout1_y", "y"), ("layer2_count", "n_spikes"), ("input_probes", "p"), ("forward1_w", "w"),
            ("layer1_spikes", "i"), ("layer1_spikes", "t")} <= pairs
    assert any(owner.startswith("forward1_pending") for owner, _ in pairs)


def _drain_file_work() -> None:
    """Wait until the work queued on :func:`file_work`'s one thread so far is done."""
    file_work().submit(lambda: None).result()


def _kept(sim) -> list[str]:
    folder = sim.backend.results_folder() / KEPT_FOLDER
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.standalone
def test_parameters_stay_in_the_binarys_files_between_runs(sim):
    """backends/param_files.py: a run's parameters are its result files, mapped read-only; given back unchanged to
    the next run they are named as they are, not written again; the outputs are those of copies written anew."""
    first = _run(sim)
    weights = first.params["layer1.W"]
    assert not weights.flags.writeable and isinstance(weights.base, np.memmap)
    with pytest.raises(ValueError, match="read-only"):
        weights[0, 0] = 1.0
    forward = sim.net.layers[0].forward
    binding = sim.net.bindings["layer1.W"]
    files = []
    kept = sim.backend.command_line({forward.w: binding.to_brian(weights)}, files)
    assert not files and kept == [f"forward1.w={sim.backend.kept_files().file_of(binding.to_brian(weights))
                                  .relative_to(sim.build_dir)}"]
    # a copy (or anything computed in Python) is written as before
    written = sim.backend.command_line({forward.w: binding.to_brian(np.array(weights))}, files)
    assert len(files) == 1 and written[0] == f"forward1.w={files[0].relative_to(sim.build_dir)}"
    files[0].unlink()
    np.testing.assert_array_equal(forward.variables["w"].get_value(), binding.to_brian(weights))  # Brian's read
    from_files = _run(sim, first.params)
    from_copies = _run(sim, {key: np.array(value) for key, value in first.params.items()})
    for a, b in zip(_arrays(from_files), _arrays(from_copies), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(from_files.params["layer1.W"], weights)  # it learned: another file


@pytest.mark.standalone
def test_kept_parameter_files_go_when_nothing_uses_them(sim):
    outputs = _run(sim)
    held = set(_kept(sim))
    assert len(held) == len(outputs.params)
    _run(sim)  # the first run's files stay while its outputs are held
    assert held < set(_kept(sim))
    del outputs
    # a freed mapping's file goes with the next run, once the finiteness check started when it was kept has let go
    # of it (on file_work's one thread): waited for here, as a loaded machine may still be running it (CI flaked)
    _drain_file_work()
    _run(sim)
    _drain_file_work()
    _run(sim)
    assert not held & set(_kept(sim)) and len(_kept(sim)) == len(sim.net.bindings)  # only the last run's


@pytest.mark.standalone
def test_a_runs_spent_files_are_removed_while_the_next_binary_runs(sim, monkeypatch):
    """The last run's argument files and the parameter files no array uses any more are removed by the next run, on
    the process's file thread while its binary runs (not in the loop's thread between runs); a run that fails before
    its binary starts leaves them to the next; a forked process removes none of its parent's."""
    arguments = sim.backend.results_folder() / ARGUMENTS_FOLDER
    outputs = _run(sim)
    spent = set(arguments.iterdir())
    kept = {sim.backend.results_folder() / KEPT_FOLDER / name for name in _kept(sim)}
    assert spent and kept
    file_work().submit(lambda: None).result()  # the finiteness checks of the kept files are done (they hold them)
    del outputs  # its parameter files are unused now, but not removed yet: by the next run
    assert all(path.is_file() for path in kept)
    fresh = {key: np.array(value) for key, value in init_params(SPEC, np.random.default_rng(0)).items()}
    command_line = type(sim.backend).command_line

    def refuse(*args, **kwargs):
        raise ValueError("refused before the binary starts")

    monkeypatch.setattr(type(sim.backend), "command_line", refuse)
    with pytest.raises(ValueError, match="refused"):
        _run(sim, fresh)
    monkeypatch.setattr(type(sim.backend), "command_line", command_line)
    assert all(path.is_file() for path in spent | kept)  # left to the next run
    removed = {}
    unlink = os.unlink

    def spy_unlink(path, *args, **kwargs):
        removed[Path(path)] = threading.current_thread().name
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", spy_unlink)
    second = _run(sim, fresh)
    assert spent | kept <= set(removed) and not any(path.exists() for path in spent | kept)
    assert {removed[path].split("_")[0] for path in spent | kept} == {"decolle-files"}  # with the binary's run
    now = set(arguments.iterdir())
    assert now and not now & spent  # this run's: removed by the next one
    sim.backend._litter = (os.getpid() + 1, sim.backend._litter[1])  # as a forked process finds them: its parent's
    removed.clear()
    _run(sim, second.params)
    assert not now & set(removed) and all(path.is_file() for path in now)


@pytest.mark.standalone
def test_parameters_known_finite_are_what_the_run_checks(sim, monkeypatch):
    """run_chunk's check of the parameters asks the backend which are known to be all finite (the kept files'
    checks): one said not to be is refused, naming it, before anything runs."""
    outputs = _run(sim)
    weights = outputs.params["layer1.W"]
    known = KeptFiles.known_finite
    monkeypatch.setattr(KeptFiles, "known_finite",
                        lambda self, array: False if array.ctypes.data == weights.ctypes.data else known(self, array))
    with pytest.raises(ValueError, match="Parameter 'layer1.W' contains NaN or infinite values"):
        _run(sim, outputs.params)
    assert known(sim.backend.kept_files(), weights) is True


@pytest.mark.standalone
def test_run_arguments_are_written_ahead_and_a_second_run_writes_them_anew(sim, monkeypatch):
    """prepare_inputs writes the run's TimedArray values into the files the binary reads (on the thread preparing
    the next run); the run names those files; the same prepared inputs run again (their files gone with the first
    run) are written anew; all three runs give the outputs of inputs not prepared ahead, to the bit."""
    rng = np.random.default_rng(3)
    samples = [(rng.poisson(0.5, (STEPS // 2, SPEC.n_inputs)).astype(float), k) for k in (0, 2)]
    inputs, _ = pack_chunk(samples, STEPS, SPEC.n_classes, lr=0.05, burnin=0, learn=True, dropout=0.5,
                           layer_sizes=[10, 8], rng=np.random.default_rng(4))
    params = {key: np.array(value) for key, value in init_params(SPEC, np.random.default_rng(0)).items()}
    prepared = sim.prepare_inputs(inputs)
    staged = {key: value for key, value in prepared.arrays.items() if isinstance(value, StagedArray)}
    assert staged and all(value.path.is_file() and not value.taken for value in staged.values())
    named = []
    command_line = type(sim.backend).command_line

    def spy(backend, run_args, files):
        arguments = command_line(backend, run_args, files)
        named.append(arguments)
        return arguments

    monkeypatch.setattr(type(sim.backend), "command_line", spy)
    first = sim.run_chunk(prepared, params)
    assert all(value.taken for value in staged.values())
    for value in staged.values():
        assert f"{value.name}={value.path.relative_to(sim.build_dir)}" in named[0]
    again = sim.run_chunk(prepared, params)
    assert not any(str(value.path.relative_to(sim.build_dir)) in " ".join(named[1]) for value in staged.values())
    direct = sim.run_chunk(inputs, params)
    for outputs in (again, direct):
        for a, b in zip(_arrays(first), _arrays(outputs), strict=True):
            np.testing.assert_array_equal(a, b)
    # a deep copy is the values alone (its run writes its own file); a forked process writes its own; a file no
    # run took goes when its array goes
    fresh = sim.prepare_inputs(inputs)
    value = next(value for value in fresh.arrays.values() if isinstance(value, StagedArray))
    assert isinstance(copy.deepcopy(value), np.ndarray) and not isinstance(copy.deepcopy(value), StagedArray)
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert value.take() is None and value.path.is_file()
    monkeypatch.undo()
    paths = [value.path for value in fresh.arrays.values() if isinstance(value, StagedArray)]
    del fresh, value
    gc.collect()
    assert paths and not any(path.exists() for path in paths)


def test_a_build_folder_given_relative_is_found_from_any_working_directory(sim, tmp_path, monkeypatch):
    """Brian's run of the binary changes the working directory while the thread preparing the next run writes that
    run's files (training.run_ahead): a build folder given relative (the fixture's) is made absolute when built, so
    files written from another working directory land in it and the run's outputs are unchanged."""
    assert sim.build_dir.is_absolute() and sim.backend.results_folder().is_absolute()
    rng = np.random.default_rng(3)
    samples = [(rng.poisson(0.5, (STEPS // 2, SPEC.n_inputs)).astype(float), k) for k in (0, 2)]
    inputs, _ = pack_chunk(samples, STEPS, SPEC.n_classes, lr=0.05, burnin=0, learn=True, dropout=0.5,
                           layer_sizes=[10, 8], rng=np.random.default_rng(4))
    params = {key: np.array(value) for key, value in init_params(SPEC, np.random.default_rng(0)).items()}
    expected = sim.run_chunk(inputs, params)
    monkeypatch.chdir(tmp_path)
    prepared = sim.prepare_inputs(inputs)
    staged = [value for value in prepared.arrays.values() if isinstance(value, StagedArray)]
    assert staged and all(value.path.is_file() and value.path.is_relative_to(sim.build_dir) for value in staged)
    for a, b in zip(_arrays(expected), _arrays(sim.run_chunk(prepared, params)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not any(tmp_path.iterdir())


def test_kept_parameters_are_checked_for_finite_values_when_kept(tmp_path):
    """A kept file's values are checked for NaN and infinities on a thread of their own when it is kept; the answer is
    given for the whole mapping only (any view of all of it), never for a part or a copy."""
    owner = KeptFiles(tmp_path / "params")
    for name, values in (("_array_good", np.arange(6.0)), ("_array_bad", np.array([1.0, np.nan, 2.0, np.inf]))):
        values.tofile(tmp_path / name)
    good, _ = owner.keep(tmp_path / "_array_good", np.float64)
    bad, _ = owner.keep(tmp_path / "_array_bad", np.float64)
    assert owner.known_finite(good) is True and owner.known_finite(bad) is False
    assert owner.known_finite(good.reshape(2, 3)) is True and owner.known_finite(good.reshape(2, 3).T) is True
    assert owner.known_finite(good[:3]) is None and owner.known_finite(good[::2]) is None
    assert owner.known_finite(np.array(good)) is None and owner.known_finite(good.view(np.int64)) is None
    address = good.ctypes.data
    file_work().submit(lambda: None).result()  # the checks hold the mappings until they are done
    del good
    gc.collect()
    assert address not in owner._finite  # a later mapping at the same address is checked for itself
    spec = NetworkSpec(n_inputs=2, layers=(DenseLayerSpec(1),), n_classes=1, learning=LearningSpec(optimizer="sgd"))
    params = init_params(spec, np.random.default_rng(0))
    with pytest.raises(ValueError, match="Parameter 'layer1.W' contains NaN or infinite values"):
        check_params(spec, params, lambda value: False if value is params["layer1.W"] else None)
    check_params(spec, params, owner.known_finite)  # none of them kept: looked at


def test_the_binary_asks_glibc_for_huge_pages_keeping_the_callers_tunables():
    assert huge_page_tunables(None) == HUGE_PAGE_TUNABLE
    assert huge_page_tunables("glibc.malloc.check=3") == f"glibc.malloc.check=3:{HUGE_PAGE_TUNABLE}"
    assert huge_page_tunables("glibc.malloc.hugetlb=0:glibc.malloc.check=3") == \
        "glibc.malloc.hugetlb=0:glibc.malloc.check=3"  # the caller's choice stands


@pytest.mark.standalone
def test_the_binary_runs_with_the_huge_page_tunable(sim, monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    _run(sim)
    assert HUGE_PAGE_TUNABLE in get_device().run_environment_variables["GLIBC_TUNABLES"].split(":")
    assert "GLIBC_TUNABLES" not in os.environ  # the binary's only: not left to compilers and workers


@pytest.mark.standalone
def test_a_kept_file_removed_from_outside_is_written_again(sim):
    """A kept file removed by someone else (a logout's clean-up of /dev/shm): the mapping still holds the values,
    which are written anew; the run is the same as from copies."""
    first = _run(sim)
    for name in _kept(sim):
        (sim.backend.results_folder() / KEPT_FOLDER / name).unlink()
    binding = sim.net.bindings["layer1.W"]
    assert sim.backend.kept_files().file_of(binding.to_brian(first.params["layer1.W"])) is None
    again = _run(sim, first.params)
    from_copies = _run(sim, {key: np.array(value) for key, value in first.params.items()})
    for a, b in zip(_arrays(again), _arrays(from_copies), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.standalone
def test_a_run_argument_file_the_binary_cannot_read_stops_it(sim, monkeypatch):
    """Brian's binary reports a missing or short run-argument file and goes on with the variable's initial value
    (exit 0); read_back.fatal_file_errors makes it stop, and the backend says which file."""
    first = _run(sim)
    missing = sim.backend.results_folder() / KEPT_FOLDER / "gone.dat"
    monkeypatch.setattr(KeptFiles, "file_of", lambda self, array: missing)
    with pytest.raises(DeviceError, match=r"(Could not read|Error reading) '.*gone\.dat'"):
        _run(sim, first.params)


def test_clear_results_removes_only_the_named_files(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(b"x")
    clear_results(tmp_path, ["a", "missing"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["b", "c"]
    clear_results(tmp_path)
    assert not list(tmp_path.iterdir())
    assert "last_run_info.txt" in RUN_FILES  # Brian's device.run reads it after every run


def test_function_span_matches_braces_outside_literals_and_comments():
    source = ('void f();\nvoid _write_arrays()\n{\n    // a } in a comment\n    /* { */\n'
              '    std::cout << "}" << \'{\' << "\\"}";\n    if (x) { y(); }\n}\n\nvoid _dealloc_arrays()\n{\n}\n')
    start, end = function_span(source, "_write_arrays")
    assert source[start:end].startswith("void _write_arrays()") and source[end:].startswith("\n\nvoid _dealloc")
    with pytest.raises(ValueError, match="one definition"):
        function_span(source, "_load_arrays")
    with pytest.raises(ValueError, match="does not close"):
        function_span("void _write_arrays()\n{\n    {\n}\n", "_write_arrays")


@pytest.mark.standalone
def test_a_network_without_probes_writes_a_handful_of_files(tmp_path):
    """The plain training network: parameters, readouts, spike counts and Brian's checked state only."""
    sim = Simulator(replace(SPEC, layers=(DenseLayerSpec(10),)), STEPS, build_dir=tmp_path)
    rng = np.random.default_rng(1)
    inputs, _ = pack_chunk([(rng.poisson(0.5, (STEPS, SPEC.n_inputs)).astype(float), 1)], STEPS, SPEC.n_classes,
                           lr=0.05, burnin=0, learn=True, dropout=0.5, layer_sizes=[10], rng=rng)
    sim.run_chunk(inputs, init_params(sim.spec, rng))
    names = _results(sim)
    assert not any("_synaptic_" in name or name.endswith("_queue") for name in names), sorted(names)
    assert any(name.startswith("_dynamic_array_forward1_w_") for name in names)  # the learned weights

