"""The public Python API: lazy exports, one version, the error classes and their exit codes, the README example."""

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import decolle_brian as db
from decolle_brian import errors
from decolle_brian.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _imports_in_fresh_python(statement: str) -> set[str]:
    """Top-level packages among brian2/sympy that ``statement`` imports in a fresh interpreter."""
    code = f"import sys\n{statement}\nprint(sorted({{'brian2', 'sympy'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(eval(out))  # noqa: S307 - our own print of a list of str


# ---- lazy exports ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("statement", [
    "import decolle_brian",
    "import decolle_brian as db; db.__version__; db.ConfigError",
    "import decolle_brian.errors",
    "import decolle_brian.sweep.folder",
    "import decolle_brian.sweep.plots",
])
def test_light_imports_load_neither_brian2_nor_sympy(statement):
    assert _imports_in_fresh_python(statement) == set()


def test_first_use_of_a_simulator_name_imports_brian2():
    """The lazy export really imports: the check above is not vacuous."""
    assert "brian2" in _imports_in_fresh_python("import decolle_brian as db; db.Simulator")


def test_every_exported_name_resolves_to_its_defining_module():
    for name in db.__all__:
        value = getattr(db, name)
        assert value is not None, name
    assert db.Simulator is importlib.import_module("decolle_brian.devices").Simulator
    assert set(db.__all__) <= set(dir(db))
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        db.nonsense  # noqa: B018


def test_one_version_in_one_place():
    """setup.py reads decolle_brian/_version.py, so the installed metadata and the package agree."""
    assert re.fullmatch(r"\d+\.\d+\.\d+", db.__version__)
    assert importlib.metadata.version("decolle-brian") == db.__version__


# ---- errors and exit codes -------------------------------------------------------------------------------------
OLD_PATHS = [("decolle_brian.config", "ConfigError"), ("decolle_brian.network.spec", "SpecError"),
             ("decolle_brian.sweep.spec", "SweepError"), ("decolle_brian.derivation", "DerivationError"),
             ("decolle_brian.data", "DataError"), ("decolle_brian.data.base", "DataError"),
             ("decolle_brian.devices", "DeviceError"), ("decolle_brian.store", "StoreError"),
             ("decolle_brian.experiment", "Interrupted")]


@pytest.mark.parametrize("module, name", OLD_PATHS)
def test_old_import_paths_name_the_same_class(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


@pytest.mark.parametrize("error, code, label", [
    (errors.ConfigError("learning.lr: must be > 0"), 2, "configuration error"),
    (errors.SpecError("layers: empty"), 2, "configuration error"),
    (errors.SweepError("sweep.metric: bad"), 2, "configuration error"),
    (errors.DerivationError("Unknown loss"), 2, "configuration error"),
    (errors.DataError("x.bin: truncated"), 3, "data error"),
    (errors.DeviceError("no compiler"), 4, "device error"),
    (errors.StoreError("checkpoint.h5: corrupt"), 5, "run store error"),
    (errors.Interrupted("Stopped by SIGTERM", 143), 143, None),
])
def test_cli_maps_each_error_to_its_exit_code(monkeypatch, capsys, error, code, label):
    def fail(args):
        raise error

    monkeypatch.setattr("decolle_brian.cli._info", fail)  # build_parser binds the subcommand at call time
    assert main(["info"]) == code
    message = capsys.readouterr().err.strip()
    expected = f"decolle-brian: {label}: {error}" if label else f"decolle-brian: {error}"
    assert message == expected


def test_every_error_class_has_an_exit_code():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.DecolleError)]
    assert len(classes) >= 9
    for cls in classes:
        assert isinstance(cls.exit_code, int) and cls.exit_code > 0, cls


# ---- the README example ----------------------------------------------------------------------------------------
def readme_example() -> str:
    """The ```python block of the README's "Python API" section."""
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section should hold exactly one python block"
    return blocks[0]


def test_readme_example_is_short():
    assert len(readme_example().strip().splitlines()) < 30


@pytest.mark.slow
def test_readme_example_runs(tmp_path, monkeypatch):
    """Builds a small network, learns, records traces and draws them, exactly as the README shows."""
    monkeypatch.chdir(tmp_path)
    code = readme_example()
    exec(compile(code, str(README) + ":python-api", "exec"), {"__name__": "readme_example"})  # noqa: S102
    figure = tmp_path / "example" / "traces.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    runs = list((tmp_path / "example" / "runs").glob("*/*/recordings.h5"))
    assert len(runs) == 1
    with db.RunData(runs[0].parent) as run:
        assert len(run.samples("train")) == 2  # train_every = 10 of 20 samples
        assert run.metrics and run.metrics[-1]["samples_seen"] == 20


def test_plot_command_dispatches_a_sweep_folder_to_the_sweep_figures(tmp_path, capsys):
    """`decolle-brian plot SWEEP_DIR` draws the sweep figures from the folder format alone (no runs needed)."""
    from decolle_brian.sweep import folder

    spec = {"name": "handmade", "metric": "acc", "axes": [{"key": "learning.lr", "kind": "grid"}]}
    points = [{"id": f"p{k}", "params": {"learning.lr": lr, "seed": seed}, "seed": seed}
              for k, (lr, seed) in enumerate([(0.1, 0), (0.1, 1), (1.0, 0), (1.0, 1)])]
    folder.write_sweep_json(tmp_path, spec, points)
    rows = [folder.table_row(p["id"], p["seed"], p["params"], {**folder.new_point_record(), "status": "done"},
                             {"test_accuracy": [0.5 + 0.1 * k, 0.6 + 0.1 * k]}) for k, p in enumerate(points)]
    folder.write_sweep_csv(tmp_path, rows)
    assert folder.read_sweep_csv(tmp_path)[3]["acc_L2"] == pytest.approx(0.9)
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "acc_vs_learning-lr.png").is_file()


# ---- the repository is self-contained --------------------------------------------------------------------------
def test_no_citation_of_a_document_outside_the_repository():
    """Code, tests, docs, equations and configurations cite docs/model.md, not design notes a clone lacks."""
    root = README.parent
    outside = ("DESIGN" + " §", "DESIGN" + ".md", "DESIGN" + " section")  # split: this file must not match itself
    files = [root / "README.md", *[p for folder in ("decolle_brian", "tests", "docs", "equations", "runs", "analysis",
                                                     "benchmarks") for p in (root / folder).rglob("*")
                                   if p.suffix in (".py", ".md", ".toml", ".eq", ".cpp", ".sh")]]
    assert len(files) > 50
    cited = [f"{p.relative_to(root)}:{n}" for p in files for n, line in enumerate(p.read_text().splitlines(), 1)
             if any(text in line for text in outside)]
    assert cited == []
