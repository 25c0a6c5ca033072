"""Memory per synapse: peak RSS of the standalone binary, exact vs event-driven mode.

Dense 2048-H-500 networks (H = 1000 and 2000: 2.6M and 5.1M synapses), one learning sample of 300 steps at 2 %
input activity. Each network is compiled in one child process; a second child process only runs it (the build
is up to date), so ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` of that child is the peak RSS of the
binary (``make``, which checks the build, is far smaller). Bytes per synapse are given two ways: the slope
between the two sizes (fixed costs cancel) and the whole peak RSS divided by the synapses of the larger one.

    .venv/bin/python benchmarks/event_memory.py [--hidden 1000 2000] [--modes exact event]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

N_IN, N_OUT, T = 2048, 500, 300


def spec_of(mode: str, hidden: int, optimizer: str):
    from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec  # noqa: PLC0415

    return NetworkSpec(n_inputs=N_IN, layers=(DenseLayerSpec(hidden), DenseLayerSpec(N_OUT)), n_classes=10,
                       learning=LearningSpec(optimizer=optimizer, lr=1e-3, dropout=0.5, burnin=0), mode=mode)


def child(action: str, mode: str, hidden: int, optimizer: str, build: str) -> None:
    import numpy as np  # noqa: PLC0415

    from decolle_brian.devices import Simulator  # noqa: PLC0415
    from decolle_brian.network.chunks import pack_chunk  # noqa: PLC0415
    from decolle_brian.network.params import init_params  # noqa: PLC0415

    spec = spec_of(mode, hidden, optimizer)
    sim = Simulator(spec, T, build_dir=build)
    if action == "build":
        return
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # make only (checks the build)
    rng = np.random.default_rng(0)
    params = init_params(spec, rng)
    counts = (rng.random((T, N_IN)) < 0.02).astype(float)
    inputs, _ = pack_chunk([(counts, 1)], T, 10, lr=1e-3, burnin=0, learn=True, dropout=0.5,
                           layer_sizes=[hidden, N_OUT], rng=rng)
    sim.run_chunk(inputs, params)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_rss_kib": peak, "before_kib": before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--modes", nargs="+", default=["exact", "event"])
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "adamax"])
    parser.add_argument("--out", default="benchmarks/out")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        action, mode, hidden, optimizer, build = args.child
        child(action, mode, int(hidden), optimizer, build)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for mode in args.modes:
        for optimizer in args.optimizers:
            measured = {}
            for hidden in args.hidden:
                build = str(out / "build" / f"memory-{mode}-{optimizer}-{hidden}")
                base = [sys.executable, __file__, "--child"]
                subprocess.run(base + ["build", mode, str(hidden), optimizer, build], check=True,
                               capture_output=True)
                result = subprocess.run(base + ["run", mode, str(hidden), optimizer, build], check=True,
                                        capture_output=True, text=True)
                peak = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_kib"] * 1024
                synapses = N_IN * hidden + hidden * N_OUT
                measured[hidden] = (synapses, peak)
                print(f"{mode} {optimizer} 2048-{hidden}-500: {synapses / 1e6:.2f}M synapses, peak RSS "
                      f"{peak / 2**20:.0f} MiB ({peak / synapses:.1f} B/synapse)", flush=True)
            (s1, p1), (s2, p2) = (measured[h] for h in sorted(measured)[:1] + sorted(measured)[-1:])
            rows.append({"mode": mode, "optimizer": optimizer,
                         "sizes": {f"2048-{h}-500": {"synapses": s, "peak_rss_bytes": p} for h, (s, p) in
                                   measured.items()},
                         "bytes_per_synapse_slope": (p2 - p1) / (s2 - s1) if s2 != s1 else None,
                         "bytes_per_synapse_total": p2 / s2})
    (out / "event_memory.json").write_text(json.dumps(rows, indent=2))
    print("\n| mode | optimizer | peak RSS, largest | bytes / synapse (slope) | bytes / synapse (total) |")
    print("|---|---|---|---|---|")
    for r in rows:
        largest = max(r["sizes"].values(), key=lambda x: x["synapses"])
        slope = f"{r['bytes_per_synapse_slope']:.1f}" if r["bytes_per_synapse_slope"] is not None else "-"
        print(f"| {r['mode']} | {r['optimizer']} | {largest['peak_rss_bytes'] / 2**20:.0f} MiB "
              f"({largest['synapses'] / 1e6:.1f}M synapses) | {slope} | {r['bytes_per_synapse_total']:.1f} |")


if __name__ == "__main__":
    main()
