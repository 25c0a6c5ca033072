"""End to end vs simulation: where a training chunk's time goes outside the compiled network.

Dense 2048-500-500, T = 300, 2 % input activity, online SGD with dropout 0.5 (the network of
benchmarks/event_driven.py), one compiled network (event or exact mode, C++ standalone). Per timed chunk the
wall time of what training does around the binary is split into:

- ``pack``: :func:`~decolle_brian.network.chunks.pack_chunk` (counts laid end to end, targets, learning rates,
  dropout masks drawn from the run's generator);
- ``run_chunk``: :meth:`Simulator.run_chunk` (converting the inputs for the device, writing the files, starting
  the binary, reading the results back), of which ``sim`` is the binary's own timing of ``network.run``, split
  further into :attr:`Simulator.last_run_parts` ``inputs``, ``device`` and ``read``;
- ``results``: :func:`~decolle_brian.training.sample_results` (votes and losses per sample).

Reports samples/s end to end (pack + run_chunk + results) and of the simulation alone, their ratio, and with
``--profile`` the functions that take the time outside the binary (cProfile, cumulative).

    .venv/bin/python benchmarks/end_to_end.py [--mode event] [--samples 32] [--repeats 3] [--threads 1] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from brian2 import get_device

from decolle_brian.devices import Simulator
from decolle_brian.network.chunks import pack_chunk
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec
from decolle_brian.training import sample_results

N_IN, SIZES, T, N_CLASSES, LR = 2048, (500, 500), 300, 10, 1e-3


def make_inputs(n_samples: int, activity: float, seed: int = 0):
    """``n_samples`` Bernoulli event counts (T, 2048) at ``activity``, each with a random label."""
    rng = np.random.default_rng(seed)
    return [((rng.random((T, N_IN)) < activity).astype(float), int(rng.integers(N_CLASSES)))
            for _ in range(n_samples)]


def dense_spec(mode: str, *, batch_size: int = 1, optimizer: str = "sgd", lr: float = LR, burnin: int = 0,
               dropout: float = 0.5) -> NetworkSpec:
    """The benchmark network (dense 2048-500-500, 10 classes) in ``mode``, learning with ``optimizer``."""
    return NetworkSpec(n_inputs=N_IN, layers=tuple(DenseLayerSpec(n) for n in SIZES), n_classes=N_CLASSES,
                       learning=LearningSpec(optimizer=optimizer, lr=lr, dropout=dropout, burnin=burnin),
                       mode=mode, batch_size=batch_size)


def build(spec: NetworkSpec, steps: int, threads: int, build_dir: Path) -> tuple[Simulator, float]:
    """The compiled network (C++ standalone, ``steps`` per run) and the seconds its build took."""
    started = time.time()
    sim = Simulator(spec, steps, device="cpp_standalone", threads=threads, build_dir=build_dir)
    return sim, time.time() - started


def online_chunk(sim: Simulator, samples, rng: np.random.Generator) -> Callable[[], dict]:
    """One learning run of ``samples`` laid end to end, timed in parts (the module docstring's split)."""
    learning, params = sim.spec.learning, init_params(sim.spec, np.random.default_rng(1))

    def chunk() -> dict:
        t0 = time.perf_counter()
        inputs, slots = pack_chunk(samples, sim.chunk_steps, N_CLASSES, lr=learning.lr, burnin=learning.burnin,
                                   learn=True, dropout=learning.dropout, layer_sizes=list(SIZES), rng=rng)
        t1 = time.perf_counter()
        outputs = sim.run_chunk(inputs, params)
        t2 = time.perf_counter()
        sample_results(outputs, slots, learning.burnin, sim.loss_fn, N_CLASSES)
        t3 = time.perf_counter()
        return dict(pack=t1 - t0, run_chunk=t2 - t1, results=t3 - t2, total=t3 - t0,
                    sim=float(get_device()._last_run_time), **sim.last_run_parts)

    return chunk


def median_times(chunk: Callable[[], dict], repeats: int) -> tuple[dict, dict]:
    """Median of each part over ``repeats`` runs after one warm-up (file cache), and the load around them."""
    chunk()
    load_before = os.getloadavg()
    timings = [chunk() for _ in range(repeats)]
    median = {key: float(np.median([t[key] for t in timings])) for key in timings[0]}
    return median, {"load_before": load_before, "load_after": os.getloadavg()}


def main() -> None:
    """Time one network's chunks in parts; print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="event", choices=["event", "exact"])
    parser.add_argument("--samples", type=int, default=32, help="samples per chunk (one run)")
    parser.add_argument("--repeats", type=int, default=3, help="timed chunks (median reported)")
    parser.add_argument("--activity", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile one more chunk, print the top entries")
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args()
    spec = dense_spec(args.mode)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sim, build_s = build(spec, T * args.samples, args.threads, out / "build" / f"{args.mode}-{args.threads}t")
    chunk = online_chunk(sim, make_inputs(args.samples, args.activity), np.random.default_rng(2))
    median, load = median_times(chunk, args.repeats)
    n = args.samples
    report = {"network": f"dense {N_IN}-{SIZES[0]}-{SIZES[1]}", "T": T, "mode": args.mode, "threads": args.threads,
              "activity": args.activity, "samples": n, "repeats": args.repeats, "build_s": round(build_s, 1),
              "median_s": median, "samples_per_s_end_to_end": n / median["total"],
              "samples_per_s_simulation": n / median["sim"], "ratio": median["sim"] / median["total"], **load}
    print(json.dumps(report, indent=2))
    print(f"{args.mode} {args.threads}t {args.activity:.0%}: {n / median['total']:.1f} samples/s end to end, "
          f"{n / median['sim']:.1f} in the simulation ({100 * median['sim'] / median['total']:.0f} %); outside the "
          f"binary's run: pack {median['pack']:.3f} s, run_chunk - sim {median['run_chunk'] - median['sim']:.3f} s, "
          f"results {median['results']:.3f} s")
    (out / f"end_to_end_{args.mode}.json").write_text(json.dumps(report, indent=2))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        chunk()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
