"""The reference's column in our benchmarks: run ``reference_anchor.py`` under the reference's interpreter.

The published reference (PyPI ``decolle==0.2`` with PyTorch CPU) lives in an environment of its own
(docs/benchmarks.md): it is never a dependency of this package, so a benchmark only gains a column when the
user names that interpreter. Two lines in a benchmark script::

    from anchor import add_reference_option, run_reference        # benchmarks/ is the script's folder
    add_reference_option(parser)                                  # --reference-python PATH
    ...
    result["reference"] = run_reference(args.reference_python, "conv_dvsgesture", batch=1, threads=1)

``run_reference`` returns the script's JSON record (a dict), or None after printing why there is no column
(no interpreter given or found, decolle or torch not importable there, the run failed or printed no record).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("reference_anchor.py")
EXIT_NO_REFERENCE = 3  # reference_anchor.py's exit status when decolle or torch cannot be imported
RECORD_KEY = "case"  # every record the script prints names its case


def add_reference_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--reference-python PATH``: the interpreter of the environment holding decolle 0.2 and torch."""
    parser.add_argument("--reference-python", default=None, metavar="PATH",
                        help="Python of a separate environment with decolle==0.2 and torch (CPU): adds the "
                             "published reference's figures side by side (docs/benchmarks.md); omitted if absent")


def reference_command(python: str | os.PathLike, case: str, **options) -> list[str]:
    """The command line: ``options`` become ``--name value`` (``_`` -> ``-``); True adds a bare flag."""
    command = [str(python), str(SCRIPT), "--case", case]
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        command += [flag] if value is True else [flag, str(value)]
    return command


def parse_record(stdout: str) -> dict | None:
    """The last line of ``stdout`` that is a JSON object naming its case, or None if there is none."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and RECORD_KEY in record:
            return record
    return None


def run_reference(python: str | os.PathLike | None, case: str, *, timeout: float = 1800.0,
                  **options) -> dict | None:
    """Run the reference anchor for ``case`` (``conv_dvsgesture`` or ``dense``) and return its record.

    Parameters
    ----------
    python
        The reference environment's interpreter (``--reference-python``); None: no column.
    case
        The network, as ``reference_anchor.py --case`` names it.
    timeout
        Seconds before the run is abandoned (then None).
    **options
        ``reference_anchor.py`` options: ``batch=72, threads=2, steps=300, measure="learn,eval"`` ...

    Returns
    -------
    dict or None
        The printed record (``learn_ms_per_step``, ``eval_ms_per_step``, ``samples_per_s``, ``peak_rss_mb``, the
        configuration and the machine's load), or None after printing the reason to stderr.
    """
    if python is None:
        return _absent("no --reference-python given")
    if not Path(python).is_file() or not os.access(python, os.X_OK):
        return _absent(f"interpreter {python} not found or not executable (docs/benchmarks.md: how to install it)")
    command = reference_command(python, case, **options)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return _absent(f"{' '.join(command)} ran past {timeout:g} s")
    except OSError as error:
        return _absent(f"cannot start {python}: {error}")
    if done.returncode == EXIT_NO_REFERENCE:
        return _absent(_last_line(done.stderr) or f"decolle or torch not importable under {python}")
    if done.returncode != 0:
        return _absent(f"{' '.join(command)} exited {done.returncode}: {_last_line(done.stderr)}")
    record = parse_record(done.stdout)
    if record is None:
        return _absent(f"{' '.join(command)} printed no JSON record")
    return record


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _absent(reason: str) -> None:
    print(f"reference column omitted: {reason}", file=sys.stderr, flush=True)
    return None
