"""Experiments end to end: determinism, exact resume (after a stop, SIGINT, SIGTERM, SIGKILL), bad input,
what a run stores (meta.json, summary.json) and what eval and info report.

One tiny configuration (digits, 96 training samples, a 24-neuron Adamax layer, 120-step chunks): the network
structure of tests/test_sweep.py's configuration too, so the two modules compile one network between them in
the per-structure build folder (``$DECOLLE_BUILD_DIR``), shared by the runs and the CLI subprocesses.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import PROJECT_ROOT

from decolle_brian.cli import main
from decolle_brian.config import load_config
from decolle_brian.experiment import Experiment, Interrupted, train
from decolle_brian.store import CHECKPOINT, FORMAT_VERSION, package_versions, read_checkpoint, read_metrics

pytestmark = pytest.mark.standalone

TINY = """
name = "tiny"
seed = 3
[data]
dataset = "digits"
train_samples = 96
test_samples = 40
augment_shift = 1
[data.params]
n_steps = 30
[network]
layers = [24]
[learning]
optimizer = "adamax"
lr = 1e-3
burnin = 5
dropout = 0.5
[training]
epochs = 2
chunk_samples = 4
checkpoint_every = 8
progress = false
[device]
name = "cpp_standalone"
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    path = root / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def reference_run(tiny, tmp_path_factory):
    """The uninterrupted run every other run is compared with."""
    return train(load_config(tiny), tmp_path_factory.mktemp("out"))


def _metrics(run_dir):
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in read_metrics(run_dir)]


def _assert_same_run(run_dir, reference_run):
    assert _metrics(run_dir) == _metrics(reference_run)
    params, state = read_checkpoint(run_dir)
    expected, expected_state = read_checkpoint(reference_run)
    assert state["epoch"] == expected_state["epoch"] == 2
    for key in expected:
        np.testing.assert_array_equal(params[key], expected[key], err_msg=key)


def test_run_store_layout(reference_run):
    for name in ("config.toml", "meta.json", "metrics.csv", "summary.json", CHECKPOINT):
        assert (reference_run / name).is_file(), name
    rows = read_metrics(reference_run)
    assert [(r["epoch"], r["split"]) for r in rows] == [(1, "train"), (1, "test"), (2, "train"), (2, "test")]
    assert {"loss_L1", "acc_L1", "rate_hz_L1", "synops_L1"} <= set(rows[1])
    assert rows[1]["rate_hz_L1"] > 0


def test_same_seed_same_metrics(tiny, reference_run, tmp_path):
    run = train(load_config(tiny), tmp_path)
    _assert_same_run(run, reference_run)


def test_augmentation_is_part_of_the_run(tiny, reference_run, tmp_path):
    # the reference run translates its training samples (data.augment_shift = 1): without, it learns otherwise
    run = train(load_config(tiny, ["data.augment_shift=0"]), tmp_path)
    params, _ = read_checkpoint(run)
    expected, _ = read_checkpoint(reference_run)
    assert not np.array_equal(params["layer1.W"], expected["layer1.W"])


def test_test_samples_presented_longer(tiny, reference_run, tmp_path):
    """data.test_params.n_steps: the test split's samples last 60 steps, the training samples 30 as before; the
    learning is the reference run's to the bit (evaluation draws nothing from the run's generator), the test
    metrics are those of the longer samples, and eval reads the stored configuration."""
    config = load_config(tiny, ["data.test_params.n_steps=60"])
    experiment = Experiment.from_config(config)
    assert (experiment.train_set.n_steps, experiment.test_set.n_steps) == (30, 60)
    run = train(config, tmp_path)
    params, _ = read_checkpoint(run)
    expected, _ = read_checkpoint(reference_run)
    for key in expected:
        np.testing.assert_array_equal(params[key], expected[key], err_msg=key)
    rows, expected_rows = _metrics(run), _metrics(reference_run)
    assert [r for r in rows if r["split"] == "train"] == [r for r in expected_rows if r["split"] == "train"]
    tests, expected_tests = ([r for r in x if r["split"] == "test"] for x in (rows, expected_rows))
    assert all(r["loss_L1"] != e["loss_L1"] for r, e in zip(tests, expected_tests, strict=True))
    assert main(["eval", str(run)]) == 0
    evaluation = json.loads((run / "eval_test.json").read_text())
    assert evaluation["loss"] == [tests[-1]["loss_L1"]]
    # the reference run evaluated with the longer test samples (eval --set): this run's test metrics, in a file of
    # its own with the overrides; the run's own evaluation file is not written
    copy = shutil.copytree(reference_run, tmp_path / "reference_copy")
    assert main(["eval", str(copy), "--set", "data.test_params.n_steps = 60"]) == 0
    (written,) = copy.glob("eval_test_*.json")
    assert not (copy / "eval_test.json").exists()
    evaluation = json.loads(written.read_text())
    assert evaluation["overrides"] == ["data.test_params.n_steps=60"] and evaluation["device"] == "cpp_standalone"
    assert evaluation["loss"] == [tests[-1]["loss_L1"]] and evaluation["accuracy"] == [tests[-1]["acc_L1"]]


@pytest.mark.parametrize(("override", "named"), [("network.layers=[4]", "network.layers"),
                                                 ("learning.lr=1", "learning.lr"),
                                                 ("data.test_params.n_steps=-5", "data.test_params over"),
                                                 # the split: test samples that could be training samples
                                                 ("data.params.split_seed=7", "data.params.split_seed 0 -> 7"),
                                                 ('data={dataset="digits", params={split_seed=7}}',
                                                  "an evaluation keeps the run's split"),
                                                 ("data.test_params.seed", "expected key=value")])
def test_eval_refuses_what_the_checkpoint_fixes_before_compiling(reference_run, tmp_path, capsys, override, named):
    """eval --set: a key outside data.* and device.*, a bad value, or a change of which samples are test samples
    exits 2 naming it; nothing is written."""
    copy = shutil.copytree(reference_run, tmp_path / "run")
    before = sorted(path.name for path in copy.iterdir())
    started = time.time()
    assert main(["eval", str(copy), "--set", override]) == 2
    assert named in capsys.readouterr().err
    assert time.time() - started < 10  # refused before any build
    assert sorted(path.name for path in copy.iterdir()) == before


@pytest.mark.parametrize(("flag", "override"), [(["--device", "runtime"], 'device.name="cpp_standalone"'),
                                                (["--data", "/nowhere"], 'data.root="/elsewhere"')])
def test_eval_flag_and_the_same_key_set_are_refused(reference_run, capsys, flag, override):
    """--device with --set device.name (or --data with --set data.root): one of the two would be ignored."""
    assert main(["eval", str(reference_run), *flag, "--set", override]) == 2
    assert "both given: give one" in capsys.readouterr().err


def test_resume_after_stop_is_exact(tiny, reference_run, tmp_path):
    with pytest.raises(Interrupted):
        train(load_config(tiny), tmp_path, stop_after_samples=20)
    (run,) = (tmp_path / "tiny").iterdir()
    _, state = read_checkpoint(run)
    assert state["epoch"] == 0 and 20 <= state["position"] < 96
    train(None, resume=run)
    _assert_same_run(run, reference_run)


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "decolle_brian.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for_checkpoint(out: Path, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list(out.glob(f"tiny/*/{CHECKPOINT}"))
        if found:
            return found[0].parent
        if proc.poll() is not None:
            pytest.fail(f"run ended before a checkpoint: {proc.communicate()}")
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_signal_then_resume_is_exact(sig, tiny, reference_run, tmp_path):
    proc = _cli("train", str(tiny), "--out", str(tmp_path))
    # the first checkpoint is written after 8 of the 2 x 96 training samples: training has started, and at
    # least 46 chunks of 4 samples (46 runs of the binary) and two test passes remain when the signal is sent
    run = _wait_for_checkpoint(tmp_path, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # exit 0 (the handler ignored the signal, or it killed nothing) fails here
        assert proc.returncode == 128 + sig, f"exit {proc.returncode}, expected {128 + sig}: {err[-2000:]}"
        assert f"Stopped by {sig.name}" in err and "--resume" in err
        assert not (run / "summary.json").exists()  # stopped, not finished
    _, state = read_checkpoint(run)  # readable: never torn
    assert state["epoch"] < 2  # the checkpoint of a stopped run, not of the finished one
    resumed = subprocess.run([sys.executable, "-m", "decolle_brian.cli", "train", "--resume", str(run)],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "test accuracy per layer" in resumed.stdout and str(run) in resumed.stdout
    _assert_same_run(run, reference_run)


# ---- bad input: clear errors, exit codes, nothing overwritten ----------------------------------------------------
def test_malformed_toml(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[learning\nlr = 1")
    assert main(["train", str(bad), "--out", str(tmp_path)]) == 2
    assert "malformed TOML" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("learning.lrr=1", "unknown key(s) ['learning.lrr']"),
    ("learning.lr='fast'", "learning.lr: expected"),
    ("neuron.alpha=1.2", "neuron.alpha"),
    ("learning.lr=nan", "learning.lr"),
    ("network.layers=[]", "network.layers"),
    ("network.layers=[0]", "network.layers[0].n"),
    ("learning.optimizer='rmsprop'", "learning.optimizer"),
    ("learning.surrogate='zigzag'", "Unknown surrogate"),
    ("data.test_params.n_stepz=60", "unknown key(s) ['data.test_params.n_stepz']"),
    ("data.test_params.split_seed=1", "data.test_params.split_seed: the train / test split is drawn once"),
    ("data.test_params.n_steps=5", "learning.burnin: 5 steps leave nothing to vote on in test samples of 5 steps"),
    ("data.test_params.encoder='saccade'", "data.test_params: test samples of shape (2, 14, 14)"),
    # values only the data set checks (a crash with a traceback before): named by their table
    ("data.params.n_steps=-5", "data.params (digits, train split): n_steps must be >= 1, got -5"),
    ("data.params.encoder='bogus'", "data.params (digits, train split): unknown encoder 'bogus'"),
    ("data.test_params.n_steps=0", "data.test_params over data.params (digits, test split): n_steps must be >= 1"),
    # an encoder's value: checked when the data set opens, not at the first sample (after the run folder)
    ("data.params.max_rate_hz=5000", "data.params (digits, train split): max_rate_hz must be in [0, 1000]"),
])
def test_bad_configuration_fails_before_compiling(tiny, tmp_path, capsys, override, message):
    started = time.time()
    assert main(["train", str(tiny), "--set", override, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert time.time() - started < 10  # nothing was compiled
    assert not (tmp_path / "tiny").exists()  # nothing was written


def test_missing_data_folder(tiny, tmp_path, capsys):
    code = main(["train", str(tiny), "--set", "data.dataset='mnist'", "--set", f"data.root='{tmp_path / 'none'}'",
                 "--out", str(tmp_path)])
    assert code == 3
    assert "mnist" in capsys.readouterr().err.lower()


def test_unwritable_output(tiny, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["train", str(tiny), "--out", str(blocker / "out")]) == 5
    assert "--out" in capsys.readouterr().err


# root ignores permission bits: run the command without the capabilities that override them
WITHOUT_OVERRIDES = (["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
                     if os.geteuid() == 0 else [])


def _read_only(folder: Path) -> None:
    """Make ``folder`` refuse new files for real (checked), or skip saying why it cannot be done here."""
    folder.chmod(0o555)
    probe = subprocess.run([*WITHOUT_OVERRIDES, "touch", str(folder / "probe")], capture_output=True, text=True)
    if probe.returncode == 0 or (folder / "probe").exists():
        folder.chmod(0o755)
        pytest.skip(f"cannot make a folder unwritable here (setpriv: {probe.stderr.strip() or 'writes still work'})")


def test_unwritable_run_folder_exits_5_and_the_checkpoint_resumes(tiny, reference_run, tmp_path):
    """The run folder turns read-only between two checkpoints: exit 5 naming the file and the reason, the last
    checkpoint unchanged; once writable again the run resumes and ends exactly as the uninterrupted one."""
    with pytest.raises(Interrupted):
        train(load_config(tiny), tmp_path, stop_after_samples=8)
    (run,) = (tmp_path / "tiny").iterdir()
    before = (run / CHECKPOINT).read_bytes()
    _read_only(run)
    try:
        result = subprocess.run([*WITHOUT_OVERRIDES, sys.executable, "-m", "decolle_brian.cli", "train", "--resume",
                                 str(run)], capture_output=True, text=True, timeout=600)
    finally:
        run.chmod(0o755)
    assert result.returncode == 5, result.stderr
    assert f"run store error: Cannot write {run / CHECKPOINT}: Permission denied" in result.stderr
    assert "Traceback" not in result.stderr
    assert (run / CHECKPOINT).read_bytes() == before
    read_checkpoint(run)
    assert main(["train", "--resume", str(run)]) == 0
    _assert_same_run(run, reference_run)


def test_refused_metrics_write_exits_5_and_resumes(tiny, reference_run, tmp_path, capsys):
    """metrics.csv cannot be replaced (a folder took its name): exit 5 naming it; the checkpoint resumes."""
    with pytest.raises(Interrupted):
        train(load_config(tiny), tmp_path, stop_after_samples=8)
    (run,) = (tmp_path / "tiny").iterdir()
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").mkdir()
    (run / "metrics.csv" / "blocker").write_text("x")
    assert main(["train", "--resume", str(run)]) == 5
    err = capsys.readouterr().err
    assert f"Cannot write {run / 'metrics.csv'}: Is a directory" in err
    _, state = read_checkpoint(run)  # the checkpoint written before the failed metrics write
    assert state["epoch"] == 0 and state["position"] == 96
    (run / "metrics.csv" / "blocker").unlink()
    (run / "metrics.csv").rmdir()
    assert main(["train", "--resume", str(run)]) == 0
    _assert_same_run(run, reference_run)


def test_resume_from_corrupt_checkpoint_changes_nothing(reference_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.toml", "metrics.csv"):
        (run / name).write_bytes((reference_run / name).read_bytes())
    (run / CHECKPOINT).write_bytes(b"\x89HDF\r\n garbage")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["train", "--resume", str(run)]) == 5
    assert "corrupt" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_from_foreign_checkpoint(reference_run, tiny, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    config = (reference_run / "config.toml").read_text().replace("24,", "12,").replace("24\n", "12\n")
    (run / "config.toml").write_text(config)
    (run / CHECKPOINT).write_bytes((reference_run / CHECKPOINT).read_bytes())
    before = (run / CHECKPOINT).read_bytes()
    assert main(["train", "--resume", str(run)]) == 5
    assert "another network" in capsys.readouterr().err
    assert (run / CHECKPOINT).read_bytes() == before


def test_unusable_device_exits_4_before_compiling(tiny, tmp_path, capsys, monkeypatch):
    """No C++ compiler (here: CXX names none): exit 4, the message names CXX and the fix, nothing written."""
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    started = time.time()
    assert main(["train", str(tiny), "--out", str(tmp_path / "out")]) == 4
    err = capsys.readouterr().err
    assert "device error" in err and "CXX=" in err and "runtime" in err
    assert time.time() - started < 10  # nothing was compiled
    assert not (tmp_path / "out").exists()  # no run folder


def test_cuda_training_without_a_gpu_exits_4_before_the_run_folder(tiny, tmp_path, capsys, monkeypatch):
    """device cuda_standalone on a machine without a GPU: exit 4 naming the missing GPU and the fix, before any
    build and before a run folder exists (building alone, for another machine, stays possible)."""
    from decolle_brian import cuda  # noqa: PLC0415

    monkeypatch.setattr(cuda, "find_gpus", lambda: {"source": None, "driver_cuda": None, "gpus": []})
    assert main(["train", str(tiny), "--device", "cuda_standalone", "--out", str(tmp_path / "out")]) == 4
    err = capsys.readouterr().err
    assert "No CUDA GPU found" in err and "cpp_standalone" in err
    assert not (tmp_path / "out").exists()  # no run folder


def test_meta_json_says_what_ran(reference_run, tiny):
    meta = json.loads((reference_run / "meta.json").read_text())
    experiment = Experiment.from_config(load_config(tiny))
    assert meta["device"] == "cpp_standalone" and meta["seed"] == 3
    assert meta["structure_key"] == experiment.spec.structure_key()
    assert meta["dataset"] == experiment.train_set.describe()
    assert meta["format_version"] == FORMAT_VERSION
    installed = package_versions()
    assert {"python", "decolle-brian", "brian2", "numpy"} <= set(meta["versions"])
    assert meta["versions"] == installed
    head = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=False).stdout.strip() if shutil.which("git") else ""
    if head:  # a git checkout (a fresh clone in CI): the commit it ran, "-dirty" with uncommitted changes
        assert meta["git_commit"] in (head, head + "-dirty")
    else:
        assert meta["git_commit"] == "unknown"


def test_eval_command_reproduces_the_final_test(reference_run, capsys):
    """eval of the stored checkpoint gives the run's final test numbers: same parameters, same test set."""
    assert main(["eval", str(reference_run)]) == 0
    assert "test accuracy per layer" in capsys.readouterr().out
    evaluation = json.loads((reference_run / "eval_test.json").read_text())
    summary = json.loads((reference_run / "summary.json").read_text())
    assert evaluation["split"] == "test" and evaluation["n_samples"] == 40
    assert evaluation["accuracy"] == summary["test_accuracy"]
    assert evaluation["loss"] == summary["test_loss"]
    assert evaluation["confusion"] == summary["confusion"]
    final_test = [row for row in read_metrics(reference_run) if row["split"] == "test"][-1]
    assert evaluation["accuracy"] == [final_test["acc_L1"]]


@pytest.mark.parametrize("command", ["train", "eval", "derive", "info", "plot", "sweep"])
def test_help_everywhere(command):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0


def test_checkpoint_has_no_pickle(reference_run):
    with h5py.File(reference_run / CHECKPOINT, "r") as f:
        assert all(f["params"][k].dtype.kind == "f" for k in f["params"])
        assert isinstance(f.attrs["state"], str)


def test_info_names_the_compiler_the_build_uses(tmp_path, capsys, monkeypatch):
    """``info`` reports the compiler C++ standalone builds with: $CXX when set (found or not), else g++."""
    from decolle_brian.info import info_lines  # noqa: PLC0415

    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    line = next(line for line in info_lines() if line.startswith("C++ compiler"))
    assert "no-such-c++ (from CXX) not found" in line
    monkeypatch.delenv("CXX")
    line = next(line for line in info_lines() if line.startswith("C++ compiler"))
    assert "make's default" in line and "not found" not in line


def test_info_reports_versions_devices_and_data(shared_data, capsys, monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)  # ../shared/data is also searched relative to the working directory
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    versions = next(line for line in lines if line.startswith("versions: "))
    for name, version in package_versions().items():
        assert f"{name} {version}" in versions, name
    assert any(line.startswith("devices: ") and "cpp_standalone" in line and "runtime" in line for line in lines)
    compiler = next(line for line in lines if line.startswith("C++ compiler: "))
    found = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    assert (found in compiler) if found else ("none found" in compiler)
    assert any(line.startswith("CUDA: ") for line in lines)
    assert "data: digits (embedded, scikit-learn): always available" in lines
    for name in ("mnist", "nmnist"):  # the real data of ../shared/data
        assert f"data: {name}: {shared_data.resolve() / name}" in lines, name


os.environ.setdefault("PYTHONUNBUFFERED", "1")
