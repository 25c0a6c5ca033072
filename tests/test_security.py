"""User expressions are data, never code: every way a loss or surrogate reaches the package refuses a payload.

Each payload class (an import, ``open``, a lambda, an attribute chain, a subscript, a string, a
comprehension, a keyword argument, a starred argument, a dunder name, a huge exponent, an over-long text)
goes through the command line (``derive``), a configuration file (``train``), an edited run folder
(``eval`` and ``train --resume``) and a sweep axis: exit 2, the message quotes the offending part, and the
canary file the payload would create does not exist. The grammar still accepts what the docs promise.
Nothing here compiles: every refusal happens before the network is built.
"""

import ast
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import tomli_w
from brian2.core.functions import DEFAULT_FUNCTIONS
from brian2.parsing.sympytools import str_to_sympy
from matplotlib.figure import Figure

from decolle_brian.cli import main
from decolle_brian.config import load_config, to_toml
from decolle_brian.data.base import Binned
from decolle_brian.data.cache import BinCache
from decolle_brian.derivation import (
    LOSSES,
    N_CLASSES,
    SURROGATES,
    TARGET,
    ClassSum,
    DerivationError,
    Y,
    derive,
    parse_loss,
    parse_surrogate,
)
from decolle_brian.emission import dense_code, to_brian
from decolle_brian.experiment import Experiment
from decolle_brian.expressions import FUNCTIONS, MAX_CHARS, ExpressionError, parse
from decolle_brian.network.params import init_params
from decolle_brian.plotting import save
from decolle_brian.recording import RecordingFile, surrogate_function
from decolle_brian.store import (
    CHECKPOINT,
    StoreError,
    atomic_write_text,
    new_run_dir,
    read_checkpoint,
    write_checkpoint,
    write_json,
    write_meta,
    write_metrics,
)
from decolle_brian.sweep import SweepDir, load_sweep

U = sp.Symbol("u", real=True)

BASE = """
name = "probe"
seed = 1
[data]
dataset = "digits"
train_samples = 20
test_samples = 10
[data.params]
n_steps = 20
[network]
layers = [8]
[training]
epochs = 1
progress = false
[device]
name = "cpp_standalone"
"""

# name -> (payload template: {canary} is the file it would create, {base} a valid expression; a fragment of
# the offending part the message must quote)
PAYLOADS = {
    "import": ("{base} + 0*__import__('os').system('touch {canary}')", "__import__"),
    "open": ("{base} + 0*open('{canary}', 'w').close()", "open('"),
    "lambda": ("{base} + (lambda: __import__('os').system('touch {canary}'))()", "lambda:"),
    "attribute_chain": ("{base} + ().__class__.__base__.__subclasses__()[0]", "__class__"),
    "subscript": ("{base} + [__import__('os').system('touch {canary}')][0]", "[0]"),
    "string": ("{base} + 'touch {canary}'", "'touch "),
    "comprehension": ("{base} + abs([__import__('os').system('touch {canary}') for _ in 'a'])", " for _ in "),
    "keyword": ("abs({base}, key=__import__('os').system('touch {canary}'))", "key="),
    "starred": ("max(*[{base}, __import__('os').system('touch {canary}')])", "*["),
    "dunder": ("{base} + 0*__builtins__", "__builtins__"),
    "huge_exponent": ("{base} + 2**10**10", "2**10**10"),
    "over_long": ("{base}" + " + 0*({base})" * 80, "characters long"),
}
BASES = {"loss": "(y - target)**2", "surrogate": "1/(1 + abs(u))"}


def payload(name: str, kind: str, canary: Path) -> tuple[str, str]:
    template, fragment = PAYLOADS[name]
    return template.format(base=BASES[kind], canary=canary), fragment


def refused(code: int, err: str, fragment: str, canary: Path) -> None:
    assert code == 2, err
    assert "configuration error" in err
    assert fragment in err, err
    assert "Traceback" not in err
    assert not canary.exists()


def config_text(build_dir: Path | None = None, **learning) -> str:
    raw = tomllib.loads(BASE)
    raw.setdefault("learning", {}).update(learning)
    if build_dir is not None:
        raw["device"]["build_dir"] = str(build_dir)
    return tomli_w.dumps(raw)


@pytest.fixture
def canary(tmp_path):
    return tmp_path / "CANARY"


# ---- (a) the command line ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["loss", "surrogate"])
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_derive_refuses_payload(name, kind, canary, capsys):
    text, fragment = payload(name, kind, canary)
    code = main(["derive", f"--{kind}", text])
    refused(code, capsys.readouterr().err, fragment, canary)


@pytest.mark.parametrize("kind", ["loss", "surrogate"])
def test_derive_subprocess_refuses_import(kind, canary, tmp_path):
    """The real command, as a user would type it (the issue's report created the file)."""
    text, fragment = payload("import", kind, canary)
    result = subprocess.run([sys.executable, "-m", "decolle_brian.cli", "derive", f"--{kind}", text],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    refused(result.returncode, result.stderr, fragment, canary)


# ---- (b) a configuration file ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["loss", "surrogate"])
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_train_refuses_payload_in_configuration(name, kind, canary, tmp_path, capsys):
    text, fragment = payload(name, kind, canary)
    config = tmp_path / "bad.toml"
    config.write_text(config_text(tmp_path / "build", **{kind: text}))
    code = main(["train", str(config), "--out", str(tmp_path / "out")])
    refused(code, capsys.readouterr().err, fragment, canary)
    assert not (tmp_path / "out").exists() and not (tmp_path / "build").exists()  # no run folder, no compile


def test_train_set_override_refuses_payload(canary, tmp_path, capsys):
    config = tmp_path / "good.toml"
    config.write_text(config_text())
    text, fragment = payload("import", "loss", canary)
    code = main(["train", str(config), "--set", f"learning.loss={json.dumps(text)}", "--out", str(tmp_path / "out")])
    refused(code, capsys.readouterr().err, fragment, canary)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../escaped", "/tmp/escaped", "a/b", ".hidden", ""])
def test_run_name_cannot_leave_the_output_folder(name, tmp_path, capsys):
    """The run name is one path component: '../x' would have put the run folder outside --out."""
    config = tmp_path / "good.toml"
    config.write_text(config_text())
    code = main(["train", str(config), "--set", f"name={json.dumps(name)}", "--out", str(tmp_path / "out" / "o")])
    assert code == 2
    assert "name:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped").exists()


# ---- (c) a run folder whose config.toml was edited ---------------------------------------------------------
@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder as ``train`` leaves it before compiling: config.toml, meta.json and a first checkpoint."""
    root = tmp_path_factory.mktemp("store")
    (root / "base.toml").write_text(config_text())
    config = load_config(root / "base.toml")
    experiment = Experiment.from_config(config)
    run_dir = new_run_dir(root / "out", config["name"])
    atomic_write_text(run_dir / "config.toml", to_toml(config))
    write_meta(run_dir, device="cpp_standalone", seed=config["seed"], structure_key=experiment.spec.structure_key())
    rng = np.random.default_rng(config["seed"])
    state = {"epoch": 0, "position": 0, "samples_seen": 0, "permutation": None, "wall_s": 0.0,
             "epoch_stats": {}, "rng": rng.bit_generator.state, "n_metric_rows": 0,
             "structure_key": experiment.spec.structure_key()}
    write_checkpoint(run_dir, init_params(experiment.spec, rng), state)
    return run_dir


def _edited_copy(run_folder: Path, target: Path, **learning) -> Path:
    target.mkdir()
    for item in run_folder.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    raw = tomllib.loads((target / "config.toml").read_text())
    raw["learning"].update(learning)
    raw["device"]["build_dir"] = str(target.parent / "build")
    (target / "config.toml").write_text(tomli_w.dumps(raw))
    return target


@pytest.mark.parametrize("command", ["eval", "resume"])
@pytest.mark.parametrize("kind", ["loss", "surrogate"])
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_run_folder_with_payload_is_refused(name, kind, command, run_folder, canary, tmp_path, capsys):
    text, fragment = payload(name, kind, canary)
    run = _edited_copy(run_folder, tmp_path / "run", **{kind: text})
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    argv = ["eval", str(run)] if command == "eval" else ["train", "--resume", str(run)]
    refused(main(argv), capsys.readouterr().err, fragment, canary)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # checkpoint untouched, nothing written
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_run_folder_subprocess_refuses_import(command, run_folder, canary, tmp_path):
    text, fragment = payload("import", "loss", canary)
    run = _edited_copy(run_folder, tmp_path / "run", loss=text)
    argv = ["eval", str(run)] if command == "eval" else ["train", "--resume", str(run)]
    result = subprocess.run([sys.executable, "-m", "decolle_brian.cli", *argv], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    refused(result.returncode, result.stderr, fragment, canary)
    assert (run / CHECKPOINT).read_bytes() == (run_folder / CHECKPOINT).read_bytes()


# ---- (d) a sweep axis ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["loss", "surrogate"])
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_sweep_axis_refuses_payload(name, kind, canary, tmp_path, capsys):
    text, fragment = payload(name, kind, canary)
    (tmp_path / "base.toml").write_text(config_text())
    good = "mse" if kind == "loss" else "boxcar"
    spec = tmp_path / "sweep.toml"
    spec.write_text(tomli_w.dumps({"sweep": {"name": "evil", "base": "base.toml", "build_dir": "build"},
                                   "grid": {f"learning.{kind}": [good, text]}}))
    code = main(["sweep", str(spec), "--out", str(tmp_path / "sweeps"), "--workers", "1"])
    refused(code, capsys.readouterr().err, fragment, canary)
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "build").exists()


def test_sweep_subprocess_refuses_import(canary, tmp_path):
    text, fragment = payload("import", "loss", canary)
    (tmp_path / "base.toml").write_text(config_text())
    spec = tmp_path / "sweep.toml"
    spec.write_text(tomli_w.dumps({"sweep": {"name": "evil", "base": "base.toml"},
                                   "grid": {"learning.loss": ["mse", text]}}))
    result = subprocess.run([sys.executable, "-m", "decolle_brian.cli", "sweep", str(spec), "--out",
                             str(tmp_path / "sweeps")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    refused(result.returncode, result.stderr, fragment, canary)
    assert not (tmp_path / "sweeps").exists()


def test_resumed_sweep_with_edited_spec_refuses_payload(canary, tmp_path, capsys):
    """A sweep folder whose stored sweep.json was edited to carry a payload: refused before any point runs."""
    text, fragment = payload("import", "loss", canary)
    (tmp_path / "base.toml").write_text(config_text())
    spec = tmp_path / "sweep.toml"
    spec.write_text(tomli_w.dumps({"sweep": {"name": "shared", "base": "base.toml", "build_dir": "build"},
                                   "grid": {"learning.loss": ["mse", "ce"]}}))
    sweep = SweepDir.create(load_sweep(spec), tmp_path / "sweeps")
    stored = json.loads((sweep.path / "sweep.json").read_text())
    stored["spec"]["axes"][0]["values"][1] = text
    (sweep.path / "sweep.json").write_text(json.dumps(stored))
    before = {p.name: p.read_bytes() for p in sweep.path.iterdir()}
    refused(main(["sweep", "--resume", str(sweep.path)]), capsys.readouterr().err, fragment, canary)
    assert {p.name: p.read_bytes() for p in sweep.path.iterdir()} == before
    assert not (tmp_path / "build").exists()


# ---- the parser itself ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_parser_raises_its_own_error(name, canary):
    text, fragment = payload(name, "surrogate", canary)
    with pytest.raises(ExpressionError, match=None) as info:
        parse(text, {"u": U}, FUNCTIONS, "surrogate")
    assert fragment in str(info.value)
    with pytest.raises(DerivationError):  # what the CLI maps to exit 2
        parse_surrogate(text)
    with pytest.raises(DerivationError):
        surrogate_function(text)  # the text form a recording may carry
    assert not canary.exists()


@pytest.mark.parametrize("text, fragment", [
    ("y ** 1000", "y ** 1000"),                        # exponent beyond the bound
    ("((2**100)**100)**100", "(2**100)**100"),         # a constant power beyond 2**1024
    ("-" * 150 + "y", "nested more than"),             # nesting
    ("y" + "+y" * (MAX_CHARS // 2), "characters long"),
    ("os.system", "os.system"), ("y.real", "y.real"), ("f(y)", "'f'"), ("exp + y", "without a call"),
    ("y if target else 0", "where"), ("y and target", "& and |"), ("not y", "'not'"), ("y // 2", "FloorDiv"),
    ("y in target", "'in'"), ("1j * y", "1j"), ("True * y", "True"), ("where(y, 1, 0)", "condition"),
    ("y > target", "a condition, not a number"), ("(y := 3)", ":="), ("f'{y}'", "f-string"), ("{y: 1}", "dict"),
    ("y; target", "invalid syntax"), ("y\x00", "null bytes"), ("1e999 * y", "too large"),
])
def test_parser_refuses(text, fragment):
    with pytest.raises(DerivationError) as info:
        parse_loss(text)
    assert fragment in str(info.value)


def test_grammar_accepts_builtins_exactly_as_derived_before():
    """The built-in texts give these sympy trees (what sympy's own parser gave them before)."""
    d = Y - TARGET
    expected_losses = {
        "smoothl1": ClassSum(sp.Piecewise((d**2 / 2, sp.Abs(d) < 1), (sp.Abs(d) - sp.Rational(1, 2), True)))
        / N_CLASSES,
        "mse": ClassSum(d**2) / N_CLASSES,
        "ce": sp.log(ClassSum(sp.exp(Y))) - ClassSum(TARGET * Y),
    }
    for name, expr in expected_losses.items():
        assert sp.srepr(parse_loss(name)[1]) == sp.srepr(expr), name
    slope, width = sp.Float(10.0), sp.Float(1.0)
    expected_surrogates = {
        "fast_sigmoid": 1 / (slope * sp.Abs(U) + 1) ** 2,
        "boxcar": sp.Piecewise((1, (U > -width / 2) & (U <= width / 2)), (0, True)),
        "sigmoid": sp.Float(1.0) * sp.exp(-sp.Float(1.0) * U) / (1 + sp.exp(-sp.Float(1.0) * U)) ** 2,
    }
    for name, expr in expected_surrogates.items():
        assert sp.srepr(parse_surrogate(name)[1]) == sp.srepr(expr), name
    assert set(expected_losses) == set(LOSSES) and set(expected_surrogates) == set(SURROGATES)


@pytest.mark.parametrize("text, expected", [
    ("(y - target)**2", ClassSum((Y - TARGET) ** 2) / N_CLASSES),          # element-wise: mean over classes
    ("mean(clip(y - target, -1, 1)**2)", ClassSum(sp.Max(-1, sp.Min(1, Y - TARGET)) ** 2) / N_CLASSES),
    ("sum(where(y > target, y - target, 0)) / n_classes",
     ClassSum(sp.Piecewise((Y - TARGET, Y > TARGET), (0, True))) / N_CLASSES),
    ("mean(maximum(y, target) - minimum(y, 0.5))", ClassSum(sp.Max(Y, TARGET) - sp.Min(Y, sp.Float(0.5))) / N_CLASSES),
    ("mean(sqrt((y - target)**2 + 1e-3) * tanh(y) + +log(exp(-y)))",
     ClassSum(sp.sqrt((Y - TARGET) ** 2 + sp.Float("1e-3")) * sp.tanh(Y) + sp.log(sp.exp(-Y))) / N_CLASSES),
])
def test_grammar_accepts_user_losses(text, expected):
    assert sp.simplify(parse_loss(text)[1] - expected) == 0


def test_grammar_accepts_surrogates_with_parameters():
    assert parse_surrogate("a * exp(-a * abs(u))", a=3.0)[1] == sp.Float(3.0) * sp.exp(-sp.Float(3.0) * sp.Abs(U))
    assert parse_surrogate("where(-0.5 < u <= 0.5, 1, 0)")[1] == parse_surrogate("boxcar")[1]
    assert parse_surrogate("where(~(u > 1/2) & (u > -1/2) | (u == 0), 1, 0)")[1].has(sp.Piecewise)
    step = parse_surrogate("heaviside(u + 1) * Heaviside(1 - u)")[1]
    assert [float(step.subs(U, v)) for v in (-2, 0, 2)] == [0.0, 1.0, 0.0]
    with pytest.raises(DerivationError, match="no parameter"):
        parse_surrogate("boxcar", slope=2.0)
    with pytest.raises(DerivationError, match="unknown name"):
        parse_surrogate("b * u", a=1.0)


def test_a_step_in_the_loss_is_refused():
    with pytest.raises(DerivationError, match="Dirac delta"):
        derive("mean(sign(y - target))")


@pytest.mark.parametrize("loss, surrogate", [
    ("mean(clip(y - target, -1, 1)**2) + mean(max(y, 0) * heaviside(y))", "clip(1 - abs(u), 0, 1)"),
    ("mean(maximum(y, target)**2)", "minimum(1, 1/(abs(u) + 0.1))"),
])
def test_max_min_clip_become_brian_code(loss, surrogate):
    """Brian2 has no Max, Min or Heaviside: the emitted code uses only its functions, with the same values."""
    rule = derive(loss, surrogate)
    code = dense_code(rule, "adamax")
    brian_names = set(DEFAULT_FUNCTIONS) | {"int", "inf"}
    for key, text in (("err", code.readout.err), ("neuron", code.neuron.statements),
                      ("synapse", code.synapse.statements)):
        for statement in text.splitlines():
            tree = ast.parse(statement.split("=", 1)[1].strip(), mode="eval")  # our own output, only parsed
            called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call)}
            assert called <= brian_names, (key, statement)
    rng = np.random.default_rng(0)
    for expr in (rule.err, rule.delta):
        lowered = str_to_sympy(to_brian(expr))
        for _ in range(20):
            point = {s: sp.Float(rng.uniform(-2, 2)) for s in expr.free_symbols}
            point.update({s: 10 for s in expr.free_symbols if s.name == "n_classes"})
            exact = float(expr.subs(point))
            by_name = {s.name: v for s, v in point.items()}
            named = {s: by_name[s.name] for s in lowered.free_symbols}
            value = lowered.subs(named).replace(lambda e: isinstance(e, sp.Function) and e.func.__name__ == "int_",
                                                lambda e: sp.Piecewise((1, e.args[0]), (0, True)))
            assert float(value) == pytest.approx(exact, abs=1e-9)


# ---- every write of a run: an OS refusal is a run-store error (exit 5) naming the path -------------------------
def _blocked(path: Path) -> Path:
    """A non-empty folder where a file should go: the OS refuses to open or replace it (even for root)."""
    path.mkdir()
    (path / "blocker").write_text("x")
    return path


@pytest.mark.parametrize("write, name", [
    (lambda d: write_metrics(d, [{"epoch": 1, "acc_L1": 0.5}]), "metrics.csv"),
    (lambda d: write_json(d / "summary.json", {"test_accuracy": [0.5]}), "summary.json"),
    (lambda d: write_json(d / "eval_test.json", {"accuracy": [0.5]}), "eval_test.json"),
    (lambda d: write_meta(d, seed=0), "meta.json"),
    (lambda d: atomic_write_text(d / "config.toml", "name = 'x'\n"), "config.toml"),
    (lambda d: write_checkpoint(d, {"layer1.W": np.zeros((2, 2))}, {"epoch": 0}), CHECKPOINT),
    (lambda d: RecordingFile(d / "recordings.h5", "w"), "recordings.h5"),
    (lambda d: save(Figure(), d, "learning_curves", ("png",)), "learning_curves.png"),
])
def test_refused_write_is_a_store_error_naming_the_path(write, name, tmp_path):
    _blocked(tmp_path / name)
    with pytest.raises(StoreError, match=rf"Cannot write {tmp_path / name}: Is a directory"):
        write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left behind


WITHOUT_OVERRIDES = (["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
                     if os.geteuid() == 0 else [])


def test_checkpoint_in_a_read_only_folder_keeps_the_last_one(run_folder, tmp_path):
    """The OS refuses the write (permission bits, root's overrides dropped): StoreError, old checkpoint intact."""
    run = tmp_path / "run"
    run.mkdir()
    (run / CHECKPOINT).write_bytes((run_folder / CHECKPOINT).read_bytes())
    run.chmod(0o555)
    script = ("import numpy as np, sys; from decolle_brian.store import StoreError, write_checkpoint\n"
              "try:\n    write_checkpoint(sys.argv[1], {'layer1.W': np.ones((2, 2))}, {'epoch': 9})\n"
              "except StoreError as exc:\n    print(exc); sys.exit(5)\n")
    try:
        result = subprocess.run([*WITHOUT_OVERRIDES, sys.executable, "-c", script, str(run)], capture_output=True,
                                text=True, timeout=120)
    finally:
        run.chmod(0o755)
    if result.returncode == 0 and not WITHOUT_OVERRIDES:
        pytest.skip("permission bits do not stop writes here")
    assert result.returncode == 5, result.stderr
    assert f"Cannot write {run / CHECKPOINT}: Permission denied" in result.stdout
    assert (run / CHECKPOINT).read_bytes() == (run_folder / CHECKPOINT).read_bytes()
    params, state = read_checkpoint(run)
    assert state["epoch"] == 0 and "layer1.W" in params


def test_unwritable_cache_warns_and_goes_on(tmp_path):
    cache = BinCache("nmnist", {}, _blocked(tmp_path / "cache") / "blocker")  # a file where the folder should be
    src = tmp_path / "a.bin"
    src.write_bytes(b"12345")
    binned = Binned(np.zeros(1, np.int32), np.zeros(1, np.int32), np.ones(1, np.int32), 1)
    with pytest.warns(UserWarning, match="cannot write the data cache"):
        assert cache.store([src], [binned]) is None


# ---- data checked before the run folder exists ---------------------------------------------------------------
@pytest.fixture
def nmnist_copy(shared_data, tmp_path):
    """Two real recordings per split and digit 0-2, plus 5,000 random bytes (a multiple of 5: past the size screen)."""
    root = tmp_path / "nmnist"
    for split in ("Train", "Test"):
        for digit in range(3):
            for src in sorted((shared_data / "nmnist" / split / str(digit)).glob("*.bin"))[:2]:
                (root / split / str(digit)).mkdir(parents=True, exist_ok=True)
                (root / split / str(digit) / src.name).write_bytes(src.read_bytes())
    bad = root / "Train" / "1" / "99999.bin"
    bad.write_bytes(np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return root, bad


def _nmnist_config(tmp_path: Path, root: Path, **params) -> Path:
    raw = tomllib.loads(config_text(tmp_path / "build"))
    raw["data"] = {"dataset": "nmnist", "root": str(root),
                   "params": {"n_steps": 20, "cache_dir": str(tmp_path / "cache"), **params}}
    path = tmp_path / "nmnist.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


@pytest.mark.data
def test_corrupt_recording_fails_before_the_run_folder(nmnist_copy, tmp_path, capsys):
    root, bad = nmnist_copy
    code = main(["train", str(_nmnist_config(tmp_path, root)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 3, err
    assert f"data error: {bad}:" in err and "outside the 34x34 N-MNIST sensor" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "build").exists()  # no run folder, no compile


@pytest.mark.data
def test_skip_policy_names_what_it_skipped(nmnist_copy, tmp_path):
    root, bad = nmnist_copy
    config = load_config(_nmnist_config(tmp_path, root, on_error="skip"))
    with pytest.warns(UserWarning, match=rf"nmnist train: dropped 1 samples from 1 bad files .*{bad.name}"):
        experiment = Experiment.from_config(config)
    assert len(experiment.train_set) == 6 and len(experiment.test_set) == 6
    assert [path for path, _ in experiment.train_set.skipped] == [str(bad)]
