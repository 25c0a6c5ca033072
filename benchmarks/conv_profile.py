"""Where a DvsGesture conv step spends its time: Brian's per-code-object profile, learning and evaluation.

Runs ``benchmarks/conv_dvsgesture.py`` (the DvsGesture conv network 64-128-128 7x7, C++ standalone, compiled
with ``profile=True``) once per mode with every code object kept in its profile, and prints one markdown table:
wall ms per step of each code object in the last learning run and the last evaluation run of each mode, most
expensive first, the code objects under ``--min-ms`` in every column summed into one row, then the sum of all
code objects and the binary's own time of the steps (``network.run``; the difference is Brian's loop and the
profiling clock itself). The binary's fixed cost per run is not in the profile (the benchmark reports it).

Usage::

    .venv/bin/python benchmarks/conv_profile.py [--modes exact,event] [--steps 50] [--chunks 4] [--eval-chunks 3]
        [--threads 1] [--min-ms 0.1] [--json benchmarks/out/conv_profile.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import conv_dvsgesture  # benchmarks/conv_dvsgesture.py (the script's folder)

SUFFIX = "_codeobject"
#: the benchmark's profile keys (last learning run, last evaluation run)
PHASES = {"learning": "profile_ms_per_step", "evaluation": "profile_eval_ms_per_step"}


def profile(mode: str, args: argparse.Namespace) -> dict:
    """The benchmark's record for ``mode`` with the whole profile of both phases."""
    argv = ["--mode", mode, "--steps", str(args.steps), "--chunks", str(args.chunks),
            "--eval-chunks", str(args.eval_chunks), "--threads", str(args.threads), "--profile-top", "0",
            "--json", str(Path(args.json).with_name(f"conv_profile_{mode}_run.json"))]
    return conv_dvsgesture.main(argv)


def table(records: dict, steps: int, min_ms: float) -> str:
    """Markdown table: code objects x (mode, phase), ms per step; small ones summed; totals."""
    columns = [(mode, phase) for mode in records for phase in PHASES]
    values = {column: {name.removesuffix(SUFFIX): ms for name, ms in records[column[0]][PHASES[column[1]]].items()}
              for column in columns}
    names = sorted({name for column in columns for name in values[column]},
                   key=lambda name: -max(values[column].get(name, 0.0) for column in columns))
    big = [name for name in names if max(values[column].get(name, 0.0) for column in columns) >= min_ms]
    small = [name for name in names if name not in big]
    header = "| code object | " + " | ".join(f"{mode}, {phase}" for mode, phase in columns) + " |"
    lines = [header, "|" + " --- |" * (len(columns) + 1)]
    for name in big:
        lines.append(f"| {name} | " + " | ".join(f"{values[column].get(name, 0.0):.2f}" for column in columns) + " |")
    rest = [sum(values[column].get(name, 0.0) for name in small) for column in columns]
    lines.append(f"| {len(small)} others (each < {min_ms} ms) | " + " | ".join(f"{ms:.2f}" for ms in rest) + " |")
    lines.append("| **sum of all code objects** | "
                 + " | ".join(f"**{sum(values[column].values()):.2f}**" for column in columns) + " |")

    def run_ms(mode: str, phase: str) -> float:
        # the profiled runs: the last learning run and the last evaluation run
        runs = [r for r in records[mode]["runs"] if r["learn"] == (phase == "learning")]
        return 1e3 * runs[-1]["network_run_s"] / steps

    lines.append("| network.run (the binary's time of the steps) | "
                 + " | ".join(f"{run_ms(*column):.2f}" for column in columns) + " |")
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="exact,event", help="network modes, comma separated")
    parser.add_argument("--steps", type=int, default=50, help="steps per chunk (run)")
    parser.add_argument("--chunks", type=int, default=4, help="learning chunks (the last one is profiled)")
    parser.add_argument("--eval-chunks", type=int, default=3, help="evaluation chunks (the last one is profiled)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-ms", type=float, default=0.1, help="code objects below this in every column: one row")
    parser.add_argument("--json", default=str(Path(__file__).parent / "out" / "conv_profile.json"),
                        help="the table's figures (and each mode's benchmark record beside it)")
    args = parser.parse_args(argv)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    load = [round(os.getloadavg()[0], 1)]
    records = {mode: profile(mode, args) for mode in modes}
    load.append(round(os.getloadavg()[0], 1))
    text = table(records, args.steps, args.min_ms)
    print(f"\nms per step (wall, Brian's profile), {args.steps}-step runs, {args.threads} thread(s), "
          f"load {load[0]}-{load[1]}\n\n{text}", flush=True)
    Path(args.json).write_text(json.dumps({"load_average_1min": load, "steps": args.steps, "threads": args.threads,
                                           "profile": {mode: {phase: records[mode][key] for phase, key in
                                                              PHASES.items()} for mode in modes},
                                           "summary": {mode: records[mode]["summary"] for mode in modes}},
                                          indent=1) + "\n")
    return text


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
