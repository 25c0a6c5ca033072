"""Event-driven vs exact DECOLLE: dense 2048-500-500, T = 300, online SGD (batch 1), input activity 1, 2, 5 %.

In one run, on the same network (same initial parameters) and the same inputs: the exact mode (every synapse
every step) and the event-driven mode (``network.mode = "event"``, docs/event_driven.md), each compiled for 1
and 2 OpenMP threads. Learning is on at every step (SGD, dropout 0.5, no burn-in). Reports per configuration:

- samples/s end to end (packing the chunk's inputs and dropout masks, ``Simulator.run_chunk``: writing them,
  starting the binary, reading back) and samples/s of the simulation itself (the binary's own timing of
  ``network.run``);
- synapse updates/s: synapses x steps / simulation time (what the exact mode does; for the event mode the
  equivalent dense rate) and, for the event mode, the synaptic operations actually made (events x fan-out,
  plus flushes x synapses);
- spikes per step per layer.

Writes JSON to benchmarks/out/event_driven.json and prints a Markdown table.

    .venv/bin/python benchmarks/event_driven.py [--samples 32] [--repeats 3] [--activities 0.01 0.02 0.05]
        [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from brian2 import get_device

from decolle_brian.devices import Simulator
from decolle_brian.network.chunks import pack_chunk
from decolle_brian.network.event import frame_length, frame_schedule
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec

N_IN, SIZES, T, N_CLASSES = 2048, (500, 500), 300, 10
LR = 1e-3


def make_inputs(n_samples: int, activity: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [((rng.random((T, N_IN)) < activity).astype(float), int(rng.integers(N_CLASSES)))
            for _ in range(n_samples)]


def n_synapses() -> int:
    sizes = (N_IN, *SIZES)
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def synaptic_operations(inputs, out, spec) -> float:
    """Synapse visits of the event mode: events x fan-out (inputs, layer 1) plus flush passes x synapses."""
    fan_out = [layer.n for layer in spec.layers]
    events = np.count_nonzero(inputs.counts) * fan_out[0]
    events += sum(float(n.sum()) * fan for n, fan in zip(out.n_spikes[:-1], fan_out[1:], strict=True))
    flushes = frame_schedule(inputs.new_sample, inputs.eta, frame_length(spec.neuron))["flush_step"].sum()
    return float(events + flushes * n_synapses())


def bench(spec, sample_sets: dict, threads: int, build_root: Path, repeats: int) -> list[dict]:
    steps = T * len(next(iter(sample_sets.values())))
    started = time.time()
    sim = Simulator(spec, steps, device="cpp_standalone", threads=threads,
                    build_dir=build_root / f"{spec.mode}-{threads}t")
    build_s = time.time() - started
    results = []
    for activity, samples in sample_sets.items():
        params = init_params(spec, np.random.default_rng(1))

        def pack(samples=samples):  # the chunk's inputs and dropout masks, as training makes them
            return pack_chunk(samples, steps, N_CLASSES, lr=LR, burnin=0, learn=True, dropout=spec.learning.dropout,
                              layer_sizes=list(SIZES), rng=np.random.default_rng(2))[0]

        sim.run_chunk(pack(), params)  # warm-up (file cache)
        walls, sims = [], []
        for _ in range(repeats):  # the median of several runs: file writes make single timings noisy
            started = time.time()
            inputs = pack()
            out = sim.run_chunk(inputs, params)
            walls.append(time.time() - started)
            sims.append(float(get_device()._last_run_time))  # the binary's own timing of network.run
        wall, sim_s = float(np.median(walls)), float(np.median(sims))
        n = len(samples)
        row = {"mode": spec.mode, "threads": threads, "activity": activity, "build_s": round(build_s, 1),
               "wall_s": wall, "sim_s": sim_s, "samples_per_s": n / wall, "repeats": repeats,
               "sim_samples_per_s": n / sim_s,
               "ms_per_step": 1000 * sim_s / steps, "synapse_updates_per_s": n_synapses() * steps / sim_s,
               "spikes_per_step": [float(x.mean()) for x in out.n_spikes],
               "weights": {key: out.params[key] for key in ("layer1.W", "layer2.W")}}
        if spec.mode == "event":
            row["synaptic_ops_per_s"] = synaptic_operations(inputs, out, spec) / sim_s
        results.append(row)
        print(f"{spec.mode} {threads}t {activity:.0%}: {n / wall:.2f} samples/s end to end, {n / sim_s:.2f} simulated",
              flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32, help="samples per chunk (one run)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (median reported)")
    parser.add_argument("--activities", type=float, nargs="+", default=[0.01, 0.02, 0.05])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["exact", "event"])
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args()
    exact = NetworkSpec(n_inputs=N_IN, layers=tuple(DenseLayerSpec(n) for n in SIZES), n_classes=N_CLASSES,
                        learning=LearningSpec(optimizer="sgd", lr=LR, dropout=0.5, burnin=0))
    sample_sets = {a: make_inputs(args.samples, a) for a in args.activities}
    load_before = os.getloadavg()  # 2 cores: another busy process distorts every number (OpenMP worst)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for mode in args.modes:
        for threads in args.threads:
            results += bench(replace(exact, mode=mode), sample_sets, threads, out / "build", args.repeats)
    # same network, same inputs: how far the learned weights of the two modes are apart (relative to the change)
    w0 = init_params(exact, np.random.default_rng(1))
    for r in results:
        ref = next((x for x in results if x["mode"] == "exact" and x["activity"] == r["activity"]), None)
        if ref is not None:
            r["weight_distance"] = max(
                float(np.linalg.norm(r["weights"][k] - ref["weights"][k]) / np.linalg.norm(ref["weights"][k] - w0[k]))
                for k in ("layer1.W", "layer2.W"))
    for r in results:
        del r["weights"]
    report = {"network": f"dense {N_IN}-{SIZES[0]}-{SIZES[1]}", "T": T, "samples": args.samples, "optimizer": "sgd",
              "lr": LR, "synapses": n_synapses(), "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
              "results": results}
    (out / "event_driven.json").write_text(json.dumps(report, indent=2))
    print("\n| mode | threads | activity | samples/s (end to end) | samples/s (simulation) | ms / step "
          "| synapse updates/s (dense equiv.) | synaptic ops/s (actual) | spikes / step (L1, L2) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ops = f"{r['synaptic_ops_per_s']:.3g}" if "synaptic_ops_per_s" in r else "-"
        print(f"| {r['mode']} | {r['threads']} | {r['activity']:.0%} | {r['samples_per_s']:.2f} "
              f"| {r['sim_samples_per_s']:.2f} | {r['ms_per_step']:.3f} | {r['synapse_updates_per_s']:.3g} | {ops} "
              f"| {r['spikes_per_step'][0]:.1f}, {r['spikes_per_step'][1]:.1f} |")
    for activity in args.activities:
        for threads in args.threads:
            ex = next((r for r in results if (r["mode"], r["threads"], r["activity"]) == ("exact", threads, activity)),
                      None)
            ev = next((r for r in results if (r["mode"], r["threads"], r["activity"]) == ("event", threads, activity)),
                      None)
            if ex and ev:
                print(f"activity {activity:.0%}, {threads} thread(s): event / exact = "
                      f"{ev['samples_per_s'] / ex['samples_per_s']:.1f}x end to end, "
                      f"{ev['sim_samples_per_s'] / ex['sim_samples_per_s']:.1f}x simulation")


if __name__ == "__main__":
    main()
