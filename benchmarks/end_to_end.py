"""End to end vs simulation: where a training chunk's time goes outside the compiled network.

Dense 2048-500-500, T = 300, 2 % input activity, online SGD with dropout 0.5 (the network of
benchmarks/event_driven.py), one compiled network (event or exact mode, C++ standalone). Per timed chunk the
wall time of what training does around the binary is split into:

- ``pack``: :func:`~decolle_brian.network.chunks.pack_chunk` (counts laid end to end, targets, learning rates,
  dropout masks drawn from the run's generator);
- ``run_chunk``: :meth:`Simulator.run_chunk` (packing to words, writing the files, starting the binary, reading
  the results back), of which ``sim`` is the binary's own timing of ``network.run``;
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
    rng = np.random.default_rng(seed)
    return [((rng.random((T, N_IN)) < activity).astype(float), int(rng.integers(N_CLASSES)))
            for _ in range(n_samples)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="event", choices=["event", "exact"])
    parser.add_argument("--samples", type=int, default=32, help="samples per chunk (one run)")
    parser.add_argument("--repeats", type=int, default=3, help="timed chunks (median reported)")
    parser.add_argument("--activity", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile one more chunk, print the top entries")
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args()
    spec = NetworkSpec(n_inputs=N_IN, layers=tuple(DenseLayerSpec(n) for n in SIZES), n_classes=N_CLASSES,
                       learning=LearningSpec(optimizer="sgd", lr=LR, dropout=0.5, burnin=0), mode=args.mode)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = T * args.samples
    started = time.time()
    sim = Simulator(spec, steps, device="cpp_standalone", threads=args.threads,
                    build_dir=out / "build" / f"{args.mode}-{args.threads}t")
    build_s = time.time() - started
    samples = make_inputs(args.samples, args.activity)
    params = init_params(spec, np.random.default_rng(1))
    rng = np.random.default_rng(2)

    def chunk():
        times = {}
        t0 = time.perf_counter()
        inputs, slots = pack_chunk(samples, steps, N_CLASSES, lr=LR, burnin=0, learn=True, dropout=0.5,
                                   layer_sizes=list(SIZES), rng=rng)
        t1 = time.perf_counter()
        outputs = sim.run_chunk(inputs, params)
        t2 = time.perf_counter()
        sample_results(outputs, slots, 0, sim.loss_fn, N_CLASSES)
        t3 = time.perf_counter()
        times.update(pack=t1 - t0, run_chunk=t2 - t1, results=t3 - t2, total=t3 - t0,
                     sim=float(get_device()._last_run_time))
        return times

    chunk()  # warm-up (file cache)
    load_before = os.getloadavg()
    timings = [chunk() for _ in range(args.repeats)]
    median = {key: float(np.median([t[key] for t in timings])) for key in timings[0]}
    n = args.samples
    report = {"network": f"dense {N_IN}-{SIZES[0]}-{SIZES[1]}", "T": T, "mode": args.mode, "threads": args.threads,
              "activity": args.activity, "samples": n, "repeats": args.repeats, "build_s": round(build_s, 1),
              "median_s": median, "samples_per_s_end_to_end": n / median["total"],
              "samples_per_s_simulation": n / median["sim"], "ratio": median["sim"] / median["total"],
              "load_before": load_before, "load_after": os.getloadavg()}
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
