"""Parameter sweeps: spec validation, local pool and Dask give the same points, one compile per structure,
kill and resume without rerunning finished points, a failing point recorded while the others run.

One tiny configuration (digits, 24 training / 20 test samples, 20 steps, one Adamax layer of 24, one epoch, 6
samples per 120-step chunk): the network structure of tests/test_experiment.py's configuration, and the sweeps
build in the per-structure build root of plain runs (``$DECOLLE_BUILD_DIR``), so the two modules compile one
network between them (in whichever runs first) and every later point only copies and reuses the binary.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import import_or_skip

from decolle_brian.cli import main
from decolle_brian.devices import build_root
from decolle_brian.sweep import SweepDir, SweepError, load_sweep, read_sweep_csv, run_sweep
from decolle_brian.sweep.execute import STATE_JSON

PROJECT = Path(__file__).resolve().parent.parent

TINY = """
name = "tiny"
seed = 0
[data]
dataset = "digits"
train_samples = 24
test_samples = 20
[data.params]
n_steps = 20
[network]
layers = [24]  # test_experiment's structure and chunk length: one build folder for both modules
[learning]
optimizer = "adamax"
lr = 1e-3
burnin = 2
[training]
epochs = 1
chunk_samples = 6
progress = false
[device]
name = "cpp_standalone"
"""

GRID = """
[sweep]
name = "grid"
base = "base.toml"
seeds = [0, 1]
build_dir = "{build_root}"
[grid]
"learning.lr" = [1e-3, 1e-2]
neuron.alpha = [0.9, 0.97]
"""

# learning.burnin = 25 passes every check that needs no data, and fails at run time: samples have 20 steps
FAILING = """
[sweep]
name = "failing"
base = "base.toml"
build_dir = "{build_root}"
[grid]
"learning.burnin" = [2, 25]
"learning.lr" = [0.1, 0.3, 1.0]
"""

METRICS = ("acc_L1", "loss_L1", "rate_hz_L1")


def _quiet(*args):
    pass


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "base.toml").write_text(TINY)
    return root


def _spec(root: Path, name: str, text: str) -> Path:
    path = root / f"{name}.toml"
    path.write_text(text.replace("{build_root}", str(build_root())))
    return path


@pytest.fixture(scope="module")
def dask_distributed():
    """dask.distributed, imported before the (costly) local sweep: a skip locally, a failure under CI."""
    return import_or_skip("dask.distributed", "the Dask sweep test needs the dask extra (pip install -e .[dask])")


@pytest.fixture(scope="module")
def local_sweep(root):
    """The 2 x 2 grid x 2 seeds sweep on 2 local worker processes (the first build in the module)."""
    messages = []
    started = time.time()
    path = run_sweep(_spec(root, "grid", GRID), root / "out", workers=2, progress=False, log=messages.append)
    return path, messages, time.time() - started


# ---- specification ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ('[grid]\n"learning.lrr" = [0.1, 1.0]', "'learning.lrr' is not a configuration key"),
    ('[grid]\nneuron.tau = [1, 2]', "'neuron.tau' is not a configuration key"),
    ('[zip]\n"learnin.lr" = [0.1]', "'learnin.lr' is not a configuration key"),
    ('[random]\nn = 2\n"learning.l" = { uniform = [0, 1] }', "'learning.l' is not a configuration key"),
    ('[grid]\n"learning" = [1]', "'learning' is a table"),
    ('[grid]\n"learning.lr.x" = [1]', "learning.lr is a value"),
    ('[grid]\n"learning.lr" = 0.1', "expected a non-empty list"),
    ('[gird]\n"learning.lr" = [0.1]', "unknown key(s) ['gird']"),
    ('[base]\n"learning.lrr" = 1', "'learning.lrr' is not a configuration key"),
    ('[zip]\n"learning.lr" = [0.1, 1.0]\n"neuron.alpha" = [0.9]', "same length"),
    ('[grid]\n"neuron.alpha" = [0.9, 1.5]', "neuron.alpha"),
    ('[grid]\n"learning.lr" = [0.1]\n[zip]\n"learning.lr" = [0.2]', "already swept"),
    ('[random]\nn = 2\n"learning.lr" = { log_uniform = [0, 1] }', "must be > 0"),
    ('[random]\nn = 2\n"learning.lr" = { gauss = [0, 1] }', "is not a configuration key"),
])
def test_invalid_spec_names_the_key(root, text, message):
    spec = _spec(root, "bad", f'[sweep]\nbase = "base.toml"\n{text}\n')
    with pytest.raises(SweepError) as info:
        load_sweep(spec)
    assert message in str(info.value)


def test_invalid_axis_fails_before_any_run(root, tmp_path, capsys):
    spec = _spec(root, "typo", '[sweep]\nbase = "base.toml"\n[grid]\n"neuron.alpah" = [0.9, 0.95]\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path)]) == 2
    assert "'neuron.alpah' is not a configuration key" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no sweep folder, nothing ran


def test_points_grid_zip_random_seeds(root):
    spec = load_sweep(_spec(root, "mixed", """
[sweep]
base = "base.toml"
repeats = 2
[grid]
"learning.lr" = [0.1, 1.0]
[zip]
"neuron.beta" = [0.8, 0.9]
"neuron.alpharp" = [0.5, 0.6]
[random]
n = 3
seed = 7
"neuron.alpha" = { log_uniform = [0.8, 0.99] }
"training.chunk_samples" = { uniform = [2, 9] }
"network.layers" = [[8], [16]]
"""))
    points = spec.points()
    assert len(points) == 2 * 2 * 3 * 2
    assert [p.id for p in points[:3]] == ["p000", "p001", "p002"]
    assert [p.seed for p in points[:4]] == [0, 1, 0, 1]  # seeds vary fastest
    assert {(p.params["neuron.beta"], p.params["neuron.alpharp"]) for p in points} == {(0.8, 0.5), (0.9, 0.6)}
    for p in points:
        assert 0.8 <= p.params["neuron.alpha"] <= 0.99
        assert isinstance(p.params["training.chunk_samples"], int)  # an integer key: draws are rounded
        assert p.config["neuron"]["alpha"] == p.params["neuron.alpha"]
        assert p.config["network"]["layers"] in ([8], [16])
        assert p.config["name"] == p.id and p.config["seed"] == p.seed
    again = load_sweep(_spec(root, "mixed2", (root / "mixed.toml").read_text())).points()
    assert [p.params for p in again] == [p.params for p in points]  # seeded draws


def test_shipped_example_sweep_is_valid():
    spec = load_sweep(PROJECT / "runs" / "sweeps" / "tau_mem_vs_lr.toml")
    assert set(spec.keys) == {"neuron.alpha", "learning.lr"}
    assert len(spec.seeds) >= 2
    assert all(p.config["data"]["dataset"] == "digits" for p in spec.points())


# ---- running -----------------------------------------------------------------------------------------------------
@pytest.mark.standalone
def test_grid_sweep_on_local_workers(local_sweep):
    path, messages, _ = local_sweep
    rows = read_sweep_csv(path)
    assert [r["point"] for r in rows] == [f"p00{k}" for k in range(8)]
    assert all(r["status"] == "done" for r in rows), [r["error"] for r in rows]
    assert {(r["learning.lr"], r["neuron.alpha"], r["seed"]) for r in rows} == {
        (lr, a, s) for lr in (1e-3, 1e-2) for a in (0.9, 0.97) for s in (0, 1)}
    for r in rows:
        assert 0 <= r["acc_L1"] <= 1 and r["loss_L1"] > 0 and r["wall_s"] > 0
        run_dir = path / r["run_dir"]
        assert run_dir.parent == path / "points" / r["point"]  # deterministic place of the point's run
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["test_accuracy"][0] == r["acc_L1"]
    figures = {p.name for p in (path / "figures").iterdir()}
    assert {"acc_vs_learning-lr.png", "acc_vs_neuron-alpha.pdf", "heatmap_acc_learning-lr_x_neuron-alpha.png",
            "heatmap_acc_learning-lr_x_neuron-alpha.pdf"} <= figures


@pytest.mark.standalone
def test_parameters_reuse_one_compiled_network(local_sweep):
    path, messages, seconds = local_sweep
    rows = read_sweep_csv(path)
    structures = {r["structure"] for r in rows}
    assert len(structures) == 1  # lr and alpha are run-time values
    compiled = [r["point"] for r in rows if r["compiled"]]
    # at most one compile for 8 points: 1 from an empty build root, 0 when test_experiment (same structure)
    # or an earlier session built it; without the shared master, each worker's private copy would compile
    assert len(compiled) <= len(structures)
    assert SweepDir.open(path).counts()["compiles"] == len(compiled)
    assert f"{len(compiled)} compiles for 8 points run" in " ".join(messages)
    print(f"local sweep: {len(compiled)} compile(s) for 8 points in {seconds:.1f} s")


@pytest.mark.standalone
@pytest.mark.dask
def test_dask_local_cluster_gives_the_same_points(dask_distributed, root, local_sweep):
    started = time.time()
    path = run_sweep(root / "grid.toml", root / "out-dask", workers=2, dask_local=True, progress=False,
                     log=_quiet, plots=False)
    local = {r["point"]: r for r in read_sweep_csv(local_sweep[0])}
    rows = read_sweep_csv(path)
    assert all(r["status"] == "done" for r in rows), [r["error"] for r in rows]
    for r in rows:
        assert {k: r[k] for k in METRICS} == {k: local[r["point"]][k] for k in METRICS}, r["point"]
    assert not any(r["compiled"] for r in rows)  # the local sweep's build is reused
    print(f"Dask LocalCluster sweep: 8 points in {time.time() - started:.1f} s")


@pytest.mark.standalone
def test_killed_sweep_resumes_without_rerunning_finished_points(root, local_sweep):
    out = root / "out-kill"
    spec = _spec(root, "failing", FAILING)
    proc = subprocess.Popen([sys.executable, "-m", "decolle_brian.cli", "sweep", str(spec), "--workers", "1",
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, finished = time.time() + 240, {}
    while time.time() < deadline and len(finished) < 2:
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before it was killed: {proc.communicate()[1][-2000:]}")
        for state in out.glob(f"failing/*/{STATE_JSON}"):
            try:
                points = json.loads(state.read_text())["points"]
            except ValueError:
                pytest.fail(f"{state} is torn")  # written atomically: never
            finished = {k: v for k, v in points.items() if v["status"] in ("done", "failed")}
        time.sleep(0.1)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.communicate()
    assert len(finished) >= 2, "no point finished in time"
    (sweep_dir,) = (out / "failing").iterdir()
    before = {k: (v["run_dir"], (sweep_dir / v["run_dir"] / "summary.json").stat().st_mtime_ns)
              for k, v in finished.items() if v["status"] == "done"}
    assert len(read_sweep_csv(sweep_dir)) == 6  # the CSV, too, was whole when the sweep died

    path = run_sweep(None, resume=sweep_dir, workers=2, progress=False, log=_quiet, plots=False)
    rows = {r["point"]: r for r in read_sweep_csv(path)}
    state = SweepDir.open(path).state
    for point, (run_dir, mtime) in before.items():  # finished points: not rerun
        assert rows[point]["run_dir"] == run_dir and state[point]["attempts"] == 1
        assert (path / run_dir / "summary.json").stat().st_mtime_ns == mtime
    for point in ("p000", "p001", "p002"):  # burnin 2
        assert rows[point]["status"] == "done", rows[point]["error"]
    for point in ("p003", "p004", "p005"):  # burnin 25: failed with the error, the others still ran
        assert rows[point]["status"] == "failed"
        assert "learning.burnin: 25 steps leave nothing to learn" in rows[point]["error"]
        assert "burnin" in (path / "points" / point / "error.txt").read_text()
    # a failed point is rerun by --resume (and fails again); done ones are left alone
    assert main(["sweep", "--resume", str(path)]) == 1
    state = SweepDir.open(path).state
    assert all(state[p]["attempts"] == 1 for p in before)
    assert all(state[p]["attempts"] >= 2 for p in ("p003", "p004", "p005"))


@pytest.mark.standalone
def test_plot_command_draws_sweep_figures(local_sweep, tmp_path):
    from decolle_brian.sweep.plots import is_sweep_dir, plot_command

    path = local_sweep[0]
    assert is_sweep_dir(path) and not is_sweep_dir(path / "points")

    class Args:
        format = "png"  # the parser default: PNG + PDF
        out = str(tmp_path)

    Args.path = str(path)
    assert plot_command(Args) == 0
    assert {p.suffix for p in tmp_path.iterdir()} == {".png", ".pdf"}


def test_resume_refuses_a_different_spec(root, tmp_path):
    spec = load_sweep(_spec(root, "a", GRID))
    sweep = SweepDir.create(spec, tmp_path)
    other = _spec(root, "b", GRID.replace("[1e-3, 1e-2]", "[1e-3, 2e-2]"))
    with pytest.raises(SweepError, match="differs"):
        run_sweep(other, resume=sweep.path, progress=False, log=_quiet)
    assert SweepDir.open(sweep.path).counts()["pending"] == 8  # nothing ran
