"""The binary's CPU per run and the files it writes: the cost of a run beside its simulation, measured by CPU time.

Runs the dense 2048-500-500 benchmark network of ``benchmarks/end_to_end.py`` (``--network event``: mode event,
batch 1, 16 samples per run, SGD) or of ``benchmarks/batch.py`` (``--network batch72``: mode exact, batch 72,
Adamax), one thread, with the benchmarks' own chunk functions, and reports medians over ``--repeats`` runs after a
warm-up: the binary's user and system CPU per run (``getrusage`` of the finished children: the load of a shared
machine disturbs CPU time less than wall time), this process's CPU, the wall time outside the binary's run
(``device - sim``), and the files and bytes in the run's results folder. ``--write-all`` has the binary write
every array, as Brian's generated code does (``Simulator.write_all_results``): the same binary's cost before
``decolle_brian/backends/read_back.py``.

    .venv/bin/python benchmarks/run_cost.py --network event --repeats 15 [--write-all]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
from pathlib import Path

import numpy as np
from batch import BURNIN, LR, batched_chunk
from end_to_end import T, build, dense_spec, make_inputs, online_chunk


def simulator_and_chunk(network: str, out: Path):
    """The compiled network (the benchmarks' build folders under ``out``) and a function that runs one chunk."""
    if network == "event":
        sim, _ = build(dense_spec("event"), T * 16, 1, out / "build" / "event-1t")
        return sim, online_chunk(sim, make_inputs(16, 0.02), np.random.default_rng(2))
    spec = dense_spec("exact", batch_size=72, optimizer="adamax", lr=LR, burnin=BURNIN)
    sim, _ = build(spec, T, 1, out / "build" / "batch72-exact-adamax-1t")
    samples = [(counts.astype(np.float32), label) for counts, label in make_inputs(72, 0.02)]
    return sim, batched_chunk(sim, samples, np.random.default_rng(2))


def measured(sim, chunk) -> dict:
    """One chunk's parts (wall seconds), the CPU seconds of the binary and of this process, the results' files."""
    children, own = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    parts = chunk()
    children_after, own_after = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    files = [path for path in sim.backend.results_folder().iterdir() if path.is_file()]
    return {**parts, "outside_binary_run": parts["device"] - parts["sim"],
            "binary_user": children_after.ru_utime - children.ru_utime,
            "binary_system": children_after.ru_stime - children.ru_stime,
            "python_cpu": own_after.ru_utime - own.ru_utime + own_after.ru_stime - own.ru_stime,
            "files": len(files), "bytes": sum(path.stat().st_size for path in files)}


def main() -> None:
    """Measure, print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=["event", "batch72"], default="event")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs (medians reported)")
    parser.add_argument("--write-all", action="store_true", help="the binary writes every array (Brian's way)")
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args()
    out = Path(args.out)
    sim, chunk = simulator_and_chunk(args.network, out)
    sim.write_all_results = args.write_all
    measured(sim, chunk)  # warm-up: file cache
    load_before = os.getloadavg()
    runs = [measured(sim, chunk) for _ in range(args.repeats)]
    report = {"network": args.network, "write_all": args.write_all, "repeats": args.repeats,
              "median": {key: float(np.median([run[key] for run in runs])) for key in runs[0]},
              "binary_cpu": [round(run["binary_user"] + run["binary_system"], 4) for run in runs],
              "load_before": load_before, "load_after": os.getloadavg()}
    print(json.dumps(report, indent=1))
    m = report["median"]
    print(f"{args.network}{' (every array written)' if args.write_all else ''}: binary CPU per run user "
          f"{m['binary_user']:.3f} s, system {m['binary_system']:.3f} s; Python CPU {m['python_cpu']:.3f} s; outside "
          f"the binary's run {m['outside_binary_run']:.3f} s; results {m['files']:.0f} files, "
          f"{m['bytes'] / 1e6:.2f} MB")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"run_cost_{args.network}{'_write_all' if args.write_all else ''}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
