"""Where a batched run spends its time: Brian's per-code-object profile of one batch-72 learning run.

The network of benchmarks/batch.py (dense 2048-500-500, T = 300, Bernoulli inputs, dropout 0.5, Adamax
lr 1e-3 after burn-in 60), C++ standalone with ``profile=True``, one warm-up run then one profiled run; prints
the code objects that take the time, most expensive first, and the share of each.

    .venv/bin/python benchmarks/batch_profile.py [--batch 72] [--mode exact] [--threads 1] [--precision float32]
        [--out /tmp/decolle-bench]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from brian2 import get_device
from end_to_end import N_CLASSES, SIZES, T, dense_spec, make_inputs

from decolle_brian.devices import Simulator
from decolle_brian.network.batch import pack_batch
from decolle_brian.network.params import init_params

LR, BURNIN = 1e-3, 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=72)
    parser.add_argument("--mode", default="exact")
    parser.add_argument("--optimizer", default="adamax")
    parser.add_argument("--activity", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads of the binary")
    parser.add_argument("--precision", default="float64", help="network.precision (float64 or float32)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", default="/tmp/decolle-bench")
    args = parser.parse_args()
    spec = dataclasses.replace(dense_spec(args.mode, batch_size=args.batch, optimizer=args.optimizer, lr=LR,
                                          burnin=BURNIN), precision=args.precision)
    suffix = "" if args.precision == "float64" else f"-{args.precision}"
    build_dir = (Path(args.out) / "build"
                 / f"profile-batch{args.batch}-{args.mode}-{args.optimizer}-{args.threads}t{suffix}")
    started = time.time()
    sim = Simulator(spec, T, device="cpp_standalone", threads=args.threads, build_dir=build_dir,
                    profile=True)
    print(f"build {time.time() - started:.1f} s")
    learning = sim.spec.learning
    samples = [(c.astype(np.float32), label) for c, label in make_inputs(args.batch, args.activity)]
    params = init_params(sim.spec, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    for label in ("warm-up", "profiled"):
        inputs = pack_batch(samples, sim.chunk_steps, N_CLASSES, lr=learning.lr, burnin=learning.burnin,
                            learn=True, dropout=learning.dropout, layer_sizes=list(SIZES), rng=rng)
        sim.run_chunk(inputs, params)
        sim_s = float(get_device()._last_run_time)
        print(f"{label}: simulation {sim_s:.2f} s, {args.batch / sim_s:.2f} samples/s, "
              f"{1e3 * sim_s / T:.1f} ms per step")
    info = sim.profiling_info()
    total = sum(float(t) for _, t in info)
    for name, t in info[:args.top]:
        print(f"  {float(t):8.3f} s  {float(t) / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
