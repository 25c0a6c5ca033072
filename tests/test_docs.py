"""The documentation's promises: docstrings on every public function, one version, and every command shown.

The site itself (docs/, built by ``.ci/run`` with warnings as errors) also stops on a configuration key
without a description (docs/_ext/decolle_docs.py); ``tests/test_config_tree.py`` checks that on the schema.

Commands: every shell command shown in the Markdown pages (README.md, docs/, equations/README.md; fenced
``bash``/``sh``/``console`` blocks and inline code that starts like a command) must match one rule of
:data:`RULES`, which says how it is covered:

- ``run``: this test runs it (``derive``, ``info``, ``schema``; ``train`` of a digits configuration on a few
  samples on the runtime device, and ``eval``/``plot``/``--resume`` on the run that made);
- ``ci``: ``.ci/run`` runs it (``./bootstrap.sh``, ``pytest``, ``pip install -e .``);
- ``checked``: too long or needs what CI has not (hours of training on real data, benchmarks, a GPU, a Dask
  cluster): the test parses it with the real command-line parser, loads its configuration with its
  overrides, or asks the script for ``--help`` with its arguments; it is not run.

A command that matches no rule fails the test: a new command in the docs needs a rule (or a test of its own).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import pkgutil
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import decolle_brian

ROOT = Path(__file__).resolve().parent.parent


# ---- docstrings ------------------------------------------------------------------------------------------------
def public_modules() -> list[str]:
    """Every module of the package whose dotted name has no part starting with ``_`` (what the API reference
    documents: autosummary walks the same modules)."""
    names = [m.name for m in pkgutil.walk_packages(decolle_brian.__path__, "decolle_brian.")]
    return ["decolle_brian"] + [n for n in names if not any(p.startswith("_") for p in n.split(".")[1:])]


def _defined_here(module) -> list[tuple[str, object]]:
    return [(name, obj) for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__]


def test_every_public_module_function_and_class_has_a_docstring():
    missing = []
    for name in public_modules():
        module = importlib.import_module(name)
        if not (module.__doc__ or "").strip():
            missing.append(f"module {name}")
        missing += [f"{name}.{attr}" for attr, obj in _defined_here(module) if not (obj.__doc__ or "").strip()]
    assert not missing, "public objects without a docstring (the API reference shows nothing for them): " + \
        ", ".join(missing)


#: Public methods that had no docstring when this check was introduced (a protocol method's override inherits
#: the protocol's). The list may only shrink: a new undocumented method fails, and so does a listed one that
#: has gained a docstring (delete it here).
KNOWN_UNDOCUMENTED_METHODS = frozenset("""
callbacks.CheckpointWriter.write experiment.Experiment.simulator loop.EpochStats.accuracy loop.EpochStats.add
loop.EpochStats.mean_loss network.builder.BrianNetwork.all_objects network.builder.BrianNetwork.bind
network.spec.ConvLayerSpec.validate network.spec.DenseLayerSpec.validate network.spec.LearningSpec.validate
network.spec.NeuronParams.validate plotting.data.RunData.close plotting.data.RunData.sample
plotting.data.RunData.samples plotting.data.RunData.weights plotting.data.SampleData.dt_ms
plotting.data.SampleData.has plotting.data.SampleData.name recording.file.RecordingFile.attrs
recording.file.RecordingFile.close recording.file.RecordingFile.flush recording.file.RecordingFile.neurons
recording.file.RecordingFile.synapses recording.plan.RecordingPlan.describe_estimate recording.plan.RecordingPlan.mb
recording.plan.RecordingPlan.records_input recording.recorder.Recorder.flush sweep.execute.SweepDir.counts
sweep.execute.SweepDir.create sweep.execute.SweepDir.open sweep.execute.SweepDir.summary sweep.spec.Axis.as_dict
""".split())


def undocumented_methods() -> set[str]:
    out = set()
    for name in public_modules():
        for attr, cls in _defined_here(importlib.import_module(name)):
            if not inspect.isclass(cls):
                continue
            for method in vars(cls):
                if method.startswith("_"):
                    continue
                raw = inspect.getattr_static(cls, method)
                function = raw.fget if isinstance(raw, property) else getattr(raw, "__func__", raw)
                if inspect.isfunction(function):
                    doc = raw.__doc__ if isinstance(raw, property) else inspect.getdoc(getattr(cls, method))
                    if not (doc or "").strip():
                        out.add(f"{name.removeprefix('decolle_brian.')}.{attr}.{method}")
    return out


def test_no_new_public_method_without_a_docstring():
    found = undocumented_methods()
    new, gone = sorted(found - KNOWN_UNDOCUMENTED_METHODS), sorted(KNOWN_UNDOCUMENTED_METHODS - found)
    assert not new, f"document these public methods: {new}"
    assert not gone, f"now documented (or gone): remove them from KNOWN_UNDOCUMENTED_METHODS: {gone}"


def test_the_docstring_check_sees_a_missing_docstring(tmp_path, monkeypatch):
    """The check is not vacuous: a module with an undocumented public function is reported."""
    (tmp_path / "undocumented_example.py").write_text('"""A module."""\n\ndef public(x):\n    return x\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("undocumented_example")
    assert [name for name, obj in _defined_here(module) if not obj.__doc__] == ["public"]


# ---- the generated configuration reference ----------------------------------------------------------------------
def _generator():
    spec = importlib.util.spec_from_file_location("decolle_docs", ROOT / "docs" / "_ext" / "decolle_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_lists_every_key_and_stops_on_a_missing_description():
    generator = _generator()
    page = generator.configuration_page()
    from decolle_brian.config import keys  # noqa: PLC0415

    assert all(f"| `{key}` |" in page for key in keys())
    schema = {"properties": {"learning": {"$ref": "#/$defs/L"}},
              "$defs": {"L": {"properties": {"lr": {"type": "number", "default": 1.0, "exclusiveMinimum": 0}}}}}
    with pytest.raises(generator.GenerationError, match="'learning.lr' has no description"):
        generator.schema_rows(schema, schema)
    schema["$defs"]["L"]["properties"]["lr"]["description"] = "step size"
    assert generator.schema_rows(schema, schema) == [("learning.lr", "number", "`1.0`", "> 0", "step size")]


# ---- one version -----------------------------------------------------------------------------------------------
def test_one_version_citation_license_and_changelog():
    """The site reads the one version; CITATION.cff states none (so it cannot disagree); the changelog has
    a section for the current version."""
    version = decolle_brian.__version__
    assert "from decolle_brian._version import __version__" in (ROOT / "docs" / "conf.py").read_text()
    cff = (ROOT / "CITATION.cff").read_text()
    assert not re.search(r"^version:", cff, re.M)
    assert re.search(rf"^## {re.escape(version)} ", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert "10.3389/fnins.2020.00424" in cff and "GPL-3.0-or-later" in cff
    assert "GNU GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_text()


# ---- commands shown in the docs --------------------------------------------------------------------------------
COMMAND_START = re.compile(r"^(\./bootstrap\.sh|\.venv/bin/\S+ |bash |decolle-brian |python |pip install|pytest"
                           r"|[A-Z][A-Z0-9_]*=(\$\([^)]*\)|\S+) )")


def doc_pages() -> list[Path]:
    """The hand-written Markdown pages of the site (generated and build folders start with ``_``/``auto_``)."""
    pages = [ROOT / "README.md", ROOT / "equations" / "README.md"]
    for path in sorted((ROOT / "docs").rglob("*.md")):
        if not any(part.startswith(("_", "auto_")) for part in path.relative_to(ROOT / "docs").parts):
            pages.append(path)
    return pages


def commands_in(text: str) -> list[str]:
    """Shell commands of a Markdown text: lines of shell code blocks, inline code that starts like a command."""
    out = []
    for block in re.finditer(r"^```(?:bash|sh|shell|console)\n(.*?)^```", text, re.M | re.S):
        for line in block.group(1).splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    out += [m.group(1).strip() for m in re.finditer(r"`([^`\n]+)`", prose) if COMMAND_START.match(m.group(1))]
    return out


def all_commands() -> list[tuple[str, str]]:
    return sorted({(str(p.relative_to(ROOT)), c) for p in doc_pages() for c in commands_in(p.read_text())})


def normalise(command: str) -> str:
    """Without the ``./bootstrap.sh &&`` set-up (CI runs it), ``.venv/bin/`` and leading VAR=value."""
    command = re.sub(r"^\./bootstrap\.sh && ", "", command)
    command = re.sub(r"^([A-Z][A-Z0-9_]*=(\$\([^)]*\)|\S+) )+", "", command)
    return re.sub(r"^\.venv/bin/", "", command)


#: the placeholders of the docs, and what stands for them here
PLACEHOLDERS = {"<timestamp>": "{run_stamp}", "RUN_DIR": "{run_dir}", "SWEEP_DIR": "{run_dir}", "SPEC": "{spec}",
                "NAME": "runtime", "$OUT": "{tmp}/out", "OUT": "{tmp}/out", "DIR": "{tmp}/out"}
#: what turns a digits training of the docs into a run of a few seconds: the same command, fewer samples
SHRINK = ["--set", "data.train_samples=3", "--set", "data.test_samples=2", "--set", "training.epochs=1",
          "--set", "data.params.n_steps=20", "--device", "runtime"]


def _argv(command: str, context: dict) -> list[str]:
    command = normalise(command)
    if command.startswith("decolle-brian"):  # a usage line's optional parts, [--out DIR], are left out
        command = re.sub(r"\s\[[^\]]*\]", "", command)
    words = shlex.split(command)
    out = []
    for word in words:
        for key, value in PLACEHOLDERS.items():
            if key in word:
                word = word.replace(key, value.format(**context))
        out.append(word)
    return out[1:] if out and out[0] == "decolle-brian" else out


@pytest.fixture(scope="module")
def context(tmp_path_factory, monkeypatch_module):
    """A small digits run (the docs' placeholder RUN_DIR) and the folders the commands write into."""
    tmp = tmp_path_factory.mktemp("docs-commands")
    monkeypatch_module.chdir(ROOT)
    from decolle_brian.cli import main  # noqa: PLC0415

    out = tmp / "runs"
    assert main(["train", "runs/digits.toml", "--out", str(out), *SHRINK]) == 0
    run_dir = next((out / "digits").iterdir())
    return {"tmp": tmp, "run_dir": str(run_dir), "run_stamp": run_dir.name, "out": out,
            "spec": "runs/sweeps/tau_mem_vs_lr.toml"}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _cli(argv: list[str]) -> int:
    from decolle_brian.cli import main  # noqa: PLC0415

    return main(argv)


def run_cli(command, context):
    """run: the command itself, in a scratch folder for what it writes."""
    argv = _argv(command, context)
    if argv[0] == "schema" and "--out" in argv:
        argv[argv.index("--out") + 1] = str(context["tmp"] / argv[argv.index("--out") + 1])
    if argv[0] == "train" and "--resume" not in argv:
        argv += ["--out", str(context["out"]), *SHRINK]
    if argv[0] == "train" and "--resume" in argv:  # the run already ended: resuming continues nothing and returns
        argv[argv.index("--resume") + 1] = context["run_dir"]
    if argv[0] in ("eval", "plot", "export") and not Path(argv[1]).exists():
        argv[1] = context["run_dir"]
    if argv[0] == "plot":
        argv += ["--out", str(context["tmp"] / "figures")]
    if argv[0] == "export" and "--out" in argv:  # a file name of the docs, written in the scratch folder
        argv[argv.index("--out") + 1] = str(context["tmp"] / argv[argv.index("--out") + 1])
    assert _cli(argv) == 0, command


def check_cli(command, context):
    """checked: parsed by the real parser; a training's configuration is loaded with its overrides."""
    from decolle_brian.cli import build_parser  # noqa: PLC0415
    from decolle_brian.config import load_config  # noqa: PLC0415

    argv = _argv(command, context)
    args = build_parser().parse_args(argv)
    if args.command == "train" and args.config:
        load_config(args.config, list(args.set or []))
    if args.command == "sweep" and args.spec and Path(args.spec).exists():
        from decolle_brian.sweep import load_sweep  # noqa: PLC0415

        load_sweep(args.spec)


def check_script(command, context):
    """checked: the script exists and its argument parser accepts the arguments shown (``--help`` at the end)."""
    argv = _argv(command, context)
    script = ROOT / argv[1]
    assert script.is_file(), command
    if script.suffix == ".sh":
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0, command
        return
    result = subprocess.run([sys.executable, str(script), *argv[2:], "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=300, check=False)
    assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"


def check_python_code(command, context):
    """checked: the ``python -c`` code compiles and imports only names the package has."""
    code = _argv(command, context)[_argv(command, context).index("-c") + 1]
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            assert all(hasattr(module, alias.name) for alias in node.names), command


def check_pytest(command, context):
    """ci: .ci/run runs the whole suite; the files and markers named exist."""
    argv = _argv(command, context)
    argv = argv[2:] if argv[:2] == ["python", "-m"] else argv
    markers = (ROOT / "pyproject.toml").read_text()
    for i, word in enumerate(argv):
        if word.endswith(".py"):
            assert (ROOT / word).is_file(), command
        if i > 0 and argv[i - 1] == "-m":
            assert f'"{word}:' in markers, f"{command}: marker {word} is not registered"


def check_extra(command, context):
    """checked: the extra named exists in the package's metadata."""
    extra = re.search(r"\[(\w+)\]", command).group(1)
    assert extra in (importlib.metadata.metadata("decolle-brian").get_all("Provides-Extra") or []), command


def check_module(command, context):
    """checked: ``python -m MODULE`` names a module of the package."""
    module = _argv(command, context)[2]
    assert importlib.util.find_spec(module) is not None, command


def check_env_script(command, context):
    """checked: an example script of the user's own; the variable it sets is one the package reads."""
    variable = command.split("=", 1)[0]
    assert any(variable in p.read_text() for p in (ROOT / "decolle_brian").rglob("*.py")), command


def covered_by_ci(command, context):
    """ci: .ci/run runs bootstrap.sh (which installs the package with pip) and the whole test suite."""
    assert (ROOT / ".ci" / "run").read_text().count("bootstrap.sh") and (ROOT / "bootstrap.sh").is_file()


def check_docs_build(command, context):
    """ci: .ci/run installs the docs extra and builds the site with these arguments."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert '-e ".[docs]"' in ci and re.search(r"-m sphinx -W .*-b html docs docs/_build/html", ci), command


#: (pattern on the normalised command, how it is covered, the check); the first match applies
RULES = [
    (r"^decolle-brian (derive|info|schema)\b", "run", run_cli),
    (r"^decolle-brian train runs/digits\.toml\b", "run", run_cli),
    (r"^decolle-brian train --resume runs/out/digits/", "run", run_cli),
    (r"^decolle-brian (eval|plot|export) (runs/out/digits/|RUN_DIR)", "run", run_cli),
    (r"^decolle-brian (train|eval|plot|sweep|export)\b", "checked", check_cli),
    (r"^(python|bash) (benchmarks|analysis)/\S+", "checked", check_script),
    (r"^python -c ", "checked", check_python_code),
    (r"^python -m pytest$|^pytest\b", "ci", check_pytest),
    (r"^python -m decolle_brian\.", "checked", check_module),
    (r"^pip install '?decolle-brian\[\w+\]'?$", "checked", check_extra),
    (r"^pip install -e \.$|^\./bootstrap\.sh$", "ci", covered_by_ci),
    (r'^python -m pip install -e "\.\[docs\]" && \.venv/bin/python -m sphinx -W -b html docs docs/_build/html$', "ci",
     check_docs_build),
]
ENV_EXAMPLE = (r"^DECOLLE_[A-Z_]+=\S+ python my_\w+\.py$", "checked", check_env_script)


def rule_for(command: str):
    if re.match(ENV_EXAMPLE[0], command):
        return ENV_EXAMPLE
    return next((rule for rule in RULES if re.match(rule[0], normalise(command))), None)


def test_the_docs_show_commands():
    """The extraction finds the commands (so the per-command test below is not vacuous)."""
    commands = {c for _, c in all_commands()}
    assert len(commands) > 30
    assert ".venv/bin/decolle-brian info" in commands and "./bootstrap.sh && .venv/bin/python -m pytest" in commands


def test_every_command_has_a_rule():
    unmatched = [f"{page}: {command}" for page, command in all_commands() if rule_for(command) is None]
    assert not unmatched, "commands in the docs that no test covers (add a rule in tests/test_docs.py): " + \
        "; ".join(unmatched)


@pytest.mark.slow
@pytest.mark.parametrize("page,command", all_commands())
def test_command_shown_in_the_docs(page, command, context):
    rule = rule_for(command)
    assert rule is not None, f"{page}: {command}"
    rule[2](command, context)
