"""The reference anchor's helper (benchmarks/anchor.py): no column without the reference, its record when run.

Fast and without the reference: a missing interpreter, an interpreter lacking decolle (this environment's own),
and stand-in interpreters (shell scripts) that print a record recorded from ``reference_anchor.py``.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

# Printed by `/work/refenv/bin/python benchmarks/reference_anchor.py --case dense --batch 72 --threads 1
# --measure learn,sample --repeats 2` (decolle 0.2, torch 2.13 CPU), among the reference's own prints.
RECORDED = (
    '{"case": "dense", "network": "LenetDECOLLE dense 2048-500-500, 2x32x32 flattened, 10 classes", "batch": '
    '72, "threads": 1, "activity": 0.02, "optimizer": "Adamax lr 0.001 betas (0.0, 0.95)", "loss": "SmoothL1 '
    'per layer", "repeats": 2, "torch": "2.13.0+cpu", "decolle": "0.2", "python": "3.11.7", "cpus": 2, '
    '"load_1min_before": 11.16, "learn_steps": 50, "learn_ms_per_step": 39.239, "learn_ms_per_sample_step": '
    '0.545, "learn_cpu_ms_per_step": 12.138, "layer_activity": [0.065, 0.0843], "steps": 300, "burnin": 60, '
    '"steps_run": 241, "sample_s": 8.806, "samples_per_s": 8.18, "sample_cpu_s": 3.203, "load_1min_after": '
    '11.43, "peak_rss_mb": 840.1}'
)
NOISE = "Loss [0.026 0.032]\nActivity Rate [np.float32(0.022), np.float32(0.021)]\n{not json\n[1, 2]\n"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def anchor():
    return _load("anchor")


def _stand_in(tmp_path: Path, stdout: str, stderr: str = "", status: int = 0) -> Path:
    """An executable that ignores its arguments, prints ``stdout`` / ``stderr`` and exits ``status``."""
    (tmp_path / "out.txt").write_text(stdout)
    (tmp_path / "err.txt").write_text(stderr)
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\ncat '{tmp_path}/out.txt'\ncat '{tmp_path}/err.txt' >&2\nexit {status}\n")
    python.chmod(0o755)
    return python


def test_no_interpreter_given_means_no_column(anchor, capsys):
    assert anchor.run_reference(None, "dense") is None
    assert "no --reference-python given" in capsys.readouterr().err


def test_missing_interpreter_means_no_column_and_names_it(anchor, capsys, tmp_path):
    missing = tmp_path / "refenv" / "bin" / "python"
    assert anchor.run_reference(missing, "conv_dvsgesture", batch=1, threads=1) is None
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err and "docs/benchmarks.md" in err


@pytest.mark.skipif(importlib.util.find_spec("decolle") is not None or importlib.util.find_spec("torch") is not None,
                    reason="this environment has decolle or torch: the script would really run")
def test_interpreter_without_decolle_means_no_column(anchor, capsys):
    """This environment's own Python runs the real script, which cannot import torch/decolle: exit 3, None."""
    assert anchor.run_reference(sys.executable, "dense", batch=1, timeout=120) is None
    err = capsys.readouterr().err
    assert "reference column omitted" in err and "not importable" in err


def test_parse_record_finds_the_record_among_the_references_prints(anchor):
    record = anchor.parse_record(NOISE + RECORDED + "\n" + "Epoch 0: 1it [00:00]\n")
    assert record == json.loads(RECORDED)
    assert record["learn_ms_per_step"] == 39.239 and record["samples_per_s"] == 8.18
    assert anchor.parse_record(NOISE) is None
    assert anchor.parse_record('{"other": 1}\n') is None  # a JSON object that is not a record


def test_run_reference_returns_the_record_of_a_successful_run(anchor, tmp_path, capsys):
    python = _stand_in(tmp_path, NOISE + RECORDED + "\n", stderr="Epoch 0: 1it [00:00, 1.72it/s]\n")
    assert anchor.run_reference(python, "dense", batch=4, threads=1) == json.loads(RECORDED)
    assert "omitted" not in capsys.readouterr().err


@pytest.mark.parametrize(("status", "stdout", "stderr", "expected"), [
    (3, "", "reference not importable under /x/python: ModuleNotFoundError: No module named 'decolle'\n",
     "No module named 'decolle'"),
    (1, "", "Traceback ...\nRuntimeError: out of memory\n", "exited 1: RuntimeError: out of memory"),
    (0, NOISE, "", "printed no JSON record"),
])
def test_a_failed_run_means_no_column_with_the_reason(anchor, tmp_path, capsys, status, stdout, stderr, expected):
    python = _stand_in(tmp_path, stdout, stderr, status)
    assert anchor.run_reference(python, "dense") is None
    assert expected in capsys.readouterr().err


def test_a_run_past_its_timeout_means_no_column(anchor, tmp_path, capsys):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nsleep 5\n")
    python.chmod(0o755)
    assert anchor.run_reference(python, "dense", timeout=0.2) is None
    assert "ran past 0.2 s" in capsys.readouterr().err


def test_options_become_the_scripts_flags(anchor):
    command = anchor.reference_command("/r/python", "conv_dvsgesture", batch=16, threads=2, learn_steps=20,
                                       output_layer=True, steps=None, measure="learn,eval")
    assert command[:4] == ["/r/python", str(BENCHMARKS / "reference_anchor.py"), "--case", "conv_dvsgesture"]
    assert command[4:] == ["--batch", "16", "--threads", "2", "--learn-steps", "20", "--output-layer",
                           "--measure", "learn,eval"]


def test_the_scripts_options_exist_and_bad_values_are_refused():
    """The flags the helper passes are the script's own; its arguments are checked before torch is imported."""
    script = _load("reference_anchor")
    args = script.parse_args(["--case", "dense", "--batch", "72", "--threads", "2", "--learn-steps", "20",
                              "--measure", "learn,sample", "--output-layer"])
    assert (args.batch, args.threads, args.learn_steps, args.measure) == (72, 2, 20, ["learn", "sample"])
    assert (args.steps, args.burnin) == (300, 60)  # the case's T and burn-in
    args = script.parse_args(["--case", "conv_dvsgesture", "--steps", "50", "--burnin", "10"])
    assert (args.steps, args.burnin) == (50, 10)
    for bad in (["--case", "lenet"], ["--case", "dense", "--batch", "0"], ["--case", "dense", "--measure", "fwd"],
                ["--case", "dense", "--activity", "2"], ["--case", "conv_dvsgesture", "--steps", "50"]):
        with pytest.raises(SystemExit):
            script.parse_args(bad)
