"""Minibatches end to end: batch 1 and 72, exact and event modes, 1 and 2 threads, beside the reference's batch 72.

The network of benchmarks/end_to_end.py (dense 2048-500-500, T = 300, 10 classes, Bernoulli inputs at
``--activity``, dropout 0.5, burn-in 60 as the reference's N-MNIST settings), C++ standalone, one compiled
network per row. Rows:

- batch 1, mode "exact", Adamax lr 1e-3 at every step after burn-in: ``--online-samples`` samples laid end to
  end per run (the online training loop's chunks, ``training.chunk_samples``; a row for each count given);
- batch 1, mode "event", SGD lr 1e-3 at every step after burn-in: the event mode's exact regime (its Adamax
  steps once per sample, not the reference's regime; docs/event_driven.md);
- batch 72, mode "exact", Adamax lr 1e-3 at every step after burn-in on the batch-mean gradient: one run per
  batch (the training loop's :func:`~decolle_brian.network.batch.pack_batch` and
  :func:`~decolle_brian.training.batch_results`);
- batch 72, mode "event", SGD lr 1e-3 at every step after burn-in on the batch-mean gradient (the lazy batched
  event mode, docs/event_driven.md); a configuration the network refuses prints its reason, not a number;
- ``--precision float64,float32``: each row in each precision (``network.precision``; float32: the same model
  stored and computed in single precision on C++ standalone, docs/batch.md);
- with ``--reference-python``: the published reference's batch 72 (benchmarks/reference_anchor.py ``--case
  dense --measure sample``: ``decolle.utils.train`` on one batch of T = 300 steps with burn-in 60), 1 and 2
  threads.

Per row: samples/s through the training loop's own iterator (:func:`~decolle_brian.training.iter_chunks` over
``--loop-runs`` runs of samples and at least ``--loop-samples`` samples, learning), with the next run prepared
while the binary runs the current one (as training runs; the binary's threads plus one Python thread) and
sequentially, each with the simulation's share of the wall time; then one run timed in parts: samples/s end to end
(packing inputs and dropout masks, writing them, running the binary, reading back, per-sample votes and losses)
and of the simulation alone (the binary's own timing of ``network.run``); medians over ``--repeats`` after one
warm-up. The goals of the minibatch work are checked at the end, on the training loop with the next run prepared
ahead. The time outside the simulation per run is split into ``pack`` (``pack_batch`` / ``pack_chunk``),
``inputs`` (the Simulator checking and converting inputs and parameters for the device: event list, mask bits),
``device - sim`` (the backend's run less the simulation: writing the files, starting the binary, its loading and
writing of arrays), ``read`` (results read back) and ``results`` (votes and losses per sample); ``cpu`` (batch
rows) is the CPU time of one run, this process and the binary together (user + system, ``os.times``). The machine
may be shared: the 1-minute load is printed around every row.

    .venv/bin/python benchmarks/batch.py [--repeats 3] [--threads 1,2] [--rows 1:exact,1:event,72:exact]
        [--precision float64,float32] [--reference-python /work/refenv/bin/python]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from anchor import add_reference_option, run_reference
from brian2 import get_device
from end_to_end import N_CLASSES, SIZES, T, build, dense_spec, make_inputs, median_times, online_chunk

from decolle_brian.config import TrainingTable
from decolle_brian.names import DEFAULT_PRECISION, PRECISIONS
from decolle_brian.network.batch import pack_batch
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import SpecError
from decolle_brian.training import batch_results, iter_chunks

LR, BURNIN = 1e-3, 60  # the reference's N-MNIST Adamax learning rate and burn-in (reference_anchor.py, "dense")
REFERENCE_BATCH = 72
#: (batch size, mode, optimiser) of the rows, in order
ROWS = ((1, "exact", "adamax"), (1, "event", "sgd"), (REFERENCE_BATCH, "exact", "adamax"),
        (REFERENCE_BATCH, "event", "sgd"))
E2E_SHARE_GOAL = 0.8   # end to end >= 80 % of the simulation's own speed
#: the training loop's iterator timed with and without preparing the next run during the current one
LOOPS = {"overlap": True, "sequential": False}
FASTEST_GOAL = 2.0     # the fastest configuration >= 2x the reference's batch 72, end to end


def batched_chunk(sim, samples, rng: np.random.Generator) -> Callable[[], dict]:
    """One learning run of a batch (the samples side by side), timed in the parts of end_to_end.py."""
    learning, batch = sim.spec.learning, sim.spec.batch_size
    params = init_params(sim.spec, np.random.default_rng(1))
    labels = [label for _, label in samples]

    def chunk() -> dict:
        cpu0 = os.times()
        t0 = time.perf_counter()
        inputs = pack_batch(samples, sim.chunk_steps, N_CLASSES, lr=learning.lr, burnin=learning.burnin,
                            learn=True, dropout=learning.dropout, layer_sizes=list(SIZES), rng=rng)
        t1 = time.perf_counter()
        outputs = sim.run_chunk(inputs, params)
        t2 = time.perf_counter()
        batch_results(outputs, labels, T, batch, learning.burnin, sim.loss_fn, N_CLASSES)
        t3 = time.perf_counter()
        cpu1 = os.times()  # this process and the binary (a waited-for child)
        cpu = sum(cpu1[:4]) - sum(cpu0[:4])
        return dict(pack=t1 - t0, run_chunk=t2 - t1, results=t3 - t2, total=t3 - t0, cpu=cpu,
                    sim=float(get_device()._last_run_time), **sim.last_run_parts)

    return chunk


def measure_row(batch: int, mode: str, optimizer: str, threads: int, per_run: int, args,
                precision: str = DEFAULT_PRECISION) -> dict:
    """One row: build (or reuse) the network, time its runs of ``per_run`` samples (batch 1: laid end to end;
    a batch: side by side); a refused configuration gives its reason."""
    row = {"batch": batch, "mode": mode, "optimizer": optimizer, "threads": threads, "samples_per_run": per_run,
           "precision": precision}
    spec = dataclasses.replace(dense_spec(mode, batch_size=batch, optimizer=optimizer, lr=LR, burnin=BURNIN),
                               precision=precision)
    try:
        spec.validate()
    except SpecError as refusal:
        return {**row, "refused": str(refusal)}
    steps = T * per_run if batch == 1 else T
    suffix = "" if precision == DEFAULT_PRECISION else f"-{precision}"  # float64 builds keep their folders
    build_dir = Path(args.out) / "build" / f"batch{batch}-{mode}-{optimizer}-{threads}t-{per_run}{suffix}"
    sim, build_s = build(spec, steps, threads, build_dir)
    samples = [(counts.astype(np.float32), label) for counts, label in make_inputs(per_run, args.activity)]
    rng = np.random.default_rng(2)
    chunk = online_chunk(sim, samples, rng) if batch == 1 else batched_chunk(sim, samples, rng)
    median, load = median_times(chunk, args.repeats)
    loop = {f"loop_{name}": loop_rate(sim, samples, args, overlap) for name, overlap in LOOPS.items()}
    return {**row, "build_s": round(build_s, 1), "median_s": median,
            "end_to_end": per_run / median["total"], "simulation": per_run / median["sim"],
            "share": median["sim"] / median["total"], **loop, **load}


def loop_rate(sim, samples, args, overlap: bool) -> dict:
    """Samples/s through the training loop's own iterator (:func:`~decolle_brian.training.iter_chunks`, learning) over
    ``--loop-runs`` runs of these samples, or more to reach ``--loop-samples`` (an epoch is hundreds of runs, and
    the first run of a pass is prepared before it, not during another: short passes overstate that), with or
    without preparing the next run during the current one; the median over ``--repeats`` passes after one warm-up
    pass, and the simulation's share of each pass."""
    dataset = samples * max(args.loop_runs, -(-args.loop_samples // len(samples)))
    params = init_params(sim.spec, np.random.default_rng(1))
    simulated = []
    run_chunk = sim.run_chunk

    def timed_run(*run_args, **options):
        outputs = run_chunk(*run_args, **options)
        simulated.append(float(get_device()._last_run_time))
        return outputs

    sim.run_chunk = timed_run
    rates, shares = [], []
    try:
        for repeat in range(args.repeats + 1):
            simulated.clear()
            started = time.perf_counter()
            for _ in iter_chunks(sim, dataset, range(len(dataset)), params, learn=True, lr=sim.spec.learning.lr,
                                 rng=np.random.default_rng(repeat), overlap=overlap):
                pass
            wall = time.perf_counter() - started
            if repeat:  # the first pass warms the file cache
                rates.append(len(dataset) / wall)
                shares.append(sum(simulated) / wall)
    finally:
        sim.run_chunk = run_chunk
    return {"samples_per_s": float(np.median(rates)), "share": float(np.median(shares))}


def reference_rows(args) -> list[dict]:
    """The reference's batch 72 at each thread count (none without ``--reference-python``)."""
    rows = []
    for threads in args.threads:
        record = run_reference(args.reference_python, "dense", batch=REFERENCE_BATCH, threads=threads,
                               measure="sample", repeats=args.repeats, activity=args.activity)
        if record is not None:
            rows.append({"batch": REFERENCE_BATCH, "threads": threads, "end_to_end": record["samples_per_s"],
                         "record": record})
    return rows


def goals(rows: list[dict], reference: list[dict]) -> list[str]:
    """The minibatch goals, each met or not, from the measured rows: end to end is the training loop's iterator as
    training runs it (the next run prepared during the current one, ``loop_overlap``)."""
    lines = []
    measured = [row for row in rows if "refused" not in row]
    for row in measured:
        share = row["loop_overlap"]["share"]
        lines.append(f"end to end >= {E2E_SHARE_GOAL:.0%} of the simulation, batch {row['batch']} {row['mode']} "
                     f"{row['threads']}t: {share:.0%} -> {'met' if share >= E2E_SHARE_GOAL else 'NOT met'}")
    if not reference:
        lines.append("goals against the reference: not checked (no reference column)")
        return lines
    best_reference = max(reference, key=lambda r: r["end_to_end"])

    def rate(row: dict) -> float:
        return row["loop_overlap"]["samples_per_s"]

    for row in [r for r in measured if r["batch"] == REFERENCE_BATCH and r["optimizer"] == "adamax"]:
        # at each thread count against the reference at the same count (or its best where that is missing)
        same = [r for r in reference if r["threads"] == row["threads"]]
        against = same[0] if same else best_reference
        ok = rate(row) >= against["end_to_end"]
        lines.append(f"batch {REFERENCE_BATCH} exact {row.get('precision', DEFAULT_PRECISION)}, Adamax at every step "
                     f"({row['threads']}t, {rate(row):.3g} samples/s) >= the reference's batch {REFERENCE_BATCH} "
                     f"({against['threads']}t, {against['end_to_end']:.3g}): "
                     f"{'met' if ok else 'NOT met'} ({rate(row) / against['end_to_end']:.2f}x)")
    if measured:
        fastest = max(measured, key=rate)
        ratio = rate(fastest) / best_reference["end_to_end"]
        of = "" if len({(r["batch"], r["mode"]) for r in measured}) == len(ROWS) else " of the rows measured"
        lines.append(f"fastest configuration{of} (batch {fastest['batch']}, {fastest['samples_per_run']} samples per "
                     f"run, {fastest['mode']} {fastest['optimizer']} {fastest['threads']}t, {rate(fastest):.3g} "
                     f"samples/s) >= {FASTEST_GOAL:g}x the "
                     f"reference's batch {REFERENCE_BATCH} ({FASTEST_GOAL * best_reference['end_to_end']:.3g}): "
                     f"{'met' if ratio >= FASTEST_GOAL else 'NOT met'} ({ratio:.2f}x)")
    return lines


def table(rows: list[dict], reference: list[dict]) -> str:
    """The rows as a Markdown table (docs/batch.md)."""
    lines = ["| batch | samples per run | mode | optimiser | threads | training loop, next run prepared ahead: "
             "samples/s (share of the simulation) | training loop, sequential | one run: samples/s end to end | "
             "samples/s simulation | end to end / simulation | outside the simulation per run: pack, inputs, "
             "device - sim, read, results (s) | CPU s per run | "
             "load before-after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        precision = row.get("precision", DEFAULT_PRECISION)
        mode = row["mode"] if precision == DEFAULT_PRECISION else f"{row['mode']} {precision}"
        head = f"| {row['batch']} | {row['samples_per_run']} | {mode} | {row['optimizer']} | {row['threads']} |"
        if "refused" in row:
            lines.append(f"{head} refused: {row['refused']} | - | - | - | - | - | - | - |")
            continue
        cpu = f"{m_cpu:.2f}" if (m_cpu := row["median_s"].get("cpu")) is not None else "-"
        m = row["median_s"]
        loops = " | ".join(f"{row[f'loop_{name}']['samples_per_s']:.3g} ({row[f'loop_{name}']['share']:.0%})"
                           for name in LOOPS)
        lines.append(f"{head} {loops} | {row['end_to_end']:.3g} | {row['simulation']:.3g} | {row['share']:.0%} | "
                     f"{m['pack']:.3f}, {m['inputs']:.3f}, {m['device'] - m['sim']:.3f}, {m['read']:.3f}, "
                     f"{m['results']:.3f} | {cpu} | "
                     f"{row['load_before'][0]:.1f}-{row['load_after'][0]:.1f} |")
    for ref in reference:
        record = ref["record"]
        lines.append(f"| {ref['batch']} | {ref['batch']} | reference (decolle {record['decolle']}, torch "
                     f"{record['torch']}) | Adamax | {ref['threads']} | {ref['end_to_end']:.3g} | "
                     "- | - | - | - | - | - | "
                     f"{record['load_1min_before']:.1f}-{record['load_1min_after']:.1f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    """The command line; thread counts as a list of integers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (median reported)")
    parser.add_argument("--threads", default="1,2", help="comma-separated OpenMP / torch thread counts")
    parser.add_argument("--online-samples", default=str(TrainingTable.model_fields["chunk_samples"].default),
                        help="comma-separated samples per run at batch 1 (training.chunk_samples), a row for each "
                             "(default: training.chunk_samples' default)")
    parser.add_argument("--activity", type=float, default=0.02, help="probability of an input event per step")
    parser.add_argument("--loop-runs", type=int, default=4,
                        help="runs per timed pass through the training loop's iterator (iter_chunks), at least")
    parser.add_argument("--loop-samples", type=int, default=256,
                        help="samples per timed pass through the training loop's iterator, at least")
    parser.add_argument("--out", default="benchmarks/out")
    parser.add_argument("--rows", default=",".join(f"{b}:{m}" for b, m, _ in ROWS),
                        help="comma-separated batch:mode rows to measure (default: all; 72:event compiles for "
                             "about 10 minutes per thread count)")
    parser.add_argument("--precision", default=DEFAULT_PRECISION,
                        help=f"comma-separated network.precision values, each row in each ({', '.join(PRECISIONS)})")
    add_reference_option(parser)
    args = parser.parse_args(argv)
    args.precision = [p.strip() for p in args.precision.split(",") if p.strip()]
    if not args.precision or set(args.precision) - set(PRECISIONS):
        parser.error(f"--precision: give some of {list(PRECISIONS)}, got {args.precision}")
    known = {f"{b}:{m}" for b, m, _ in ROWS}
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if not args.rows or set(args.rows) - known:
        parser.error(f"--rows: give some of {sorted(known)}, got {args.rows}")
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--threads: give comma-separated integers such as 1,2, got {args.threads!r}")
    if not args.threads or min(args.threads) < 1:
        parser.error("--threads: give thread counts >= 1, such as 1,2")
    try:
        args.online_samples = [int(n) for n in args.online_samples.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--online-samples: give comma-separated integers such as 16,64, got {args.online_samples!r}")
    if not args.online_samples or min(args.online_samples) < 1:
        parser.error("--online-samples: give sample counts >= 1, such as 16,64")
    for name in ("repeats", "loop_runs", "loop_samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv=None) -> None:
    """Measure every row, then the reference; print the table and the goals, write ``OUT/batch.json``."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for batch, mode, optimizer in [row for row in ROWS if f"{row[0]}:{row[1]}" in args.rows]:
        for threads in args.threads:
            for per_run in args.online_samples if batch == 1 else [batch]:
                for precision in args.precision:
                    row = measure_row(batch, mode, optimizer, threads, per_run, args, precision)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    reference = reference_rows(args)
    report = {"network": f"dense 2048-{SIZES[0]}-{SIZES[1]}", "T": T, "burnin": BURNIN, "lr": LR,
              "activity": args.activity, "repeats": args.repeats, "cpus": os.cpu_count(),
              "python": platform.python_version(), "rows": rows, "reference": reference,
              "goals": goals(rows, reference)}
    (out / "batch.json").write_text(json.dumps(report, indent=2))
    print(table(rows, reference))
    print("\n".join(report["goals"]))


if __name__ == "__main__":
    main()
