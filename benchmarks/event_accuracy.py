"""Toy-task accuracy, exact vs event-driven mode, over seeds (the setting of tests/test_learning.py).

For every seed: the toy task's data, initial parameters, sample order and dropout masks come from that seed;
both modes train the same 40-100-100 network online (SGD, lr 1.0 x 0.7^epoch, 8 epochs, burn-in 10) and are
evaluated on the test split (majority vote per layer). Each mode is compiled once. Writes
benchmarks/out/event_accuracy.json and prints per-seed accuracies with mean and standard deviation.

    .venv/bin/python benchmarks/event_accuracy.py [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from decolle_brian.devices import Simulator
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec
from decolle_brian.toy import make_toy_task
from decolle_brian.training import evaluate_dataset, train_epoch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_learning import BURNIN, EPOCHS, LR, LR_DECAY, ArrayDataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args()
    out = Path(args.out)
    results = {}
    for mode in ("exact", "event"):
        spec = NetworkSpec(n_inputs=40, layers=(DenseLayerSpec(100), DenseLayerSpec(100)), n_classes=4, mode=mode,
                           learning=LearningSpec(optimizer="sgd", lr=LR, dropout=0.5, burnin=BURNIN))
        sim = Simulator(spec, 20 * 100, build_dir=out / "build" / f"toy-{mode}")
        results[mode] = []
        for seed in args.seeds:
            train_x, train_y, test_x, test_y = make_toy_task(n_train=200, n_test=100, seed=seed)
            train, test = ArrayDataset(train_x, train_y), ArrayDataset(test_x, test_y)
            rng = np.random.default_rng(seed)
            params = init_params(spec, rng)
            started = time.time()
            for epoch in range(EPOCHS):
                params, _ = train_epoch(sim, train, rng.permutation(len(train)), params, lr=LR * LR_DECAY**epoch,
                                        rng=rng)
            wall = time.time() - started
            accuracy = evaluate_dataset(sim, test, params).accuracy
            results[mode].append({"seed": seed, "accuracy": accuracy, "train_s": wall})
            print(f"{mode} seed {seed}: test accuracy {', '.join(f'{a:.2f}' for a in accuracy)} "
                  f"(training {wall:.1f} s)", flush=True)
    summary = {mode: {"mean": np.mean([r["accuracy"] for r in rows], axis=0).tolist(),
                      "std": np.std([r["accuracy"] for r in rows], axis=0, ddof=1).tolist() if len(rows) > 1 else None}
               for mode, rows in results.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "event_accuracy.json").write_text(json.dumps({"runs": results, "summary": summary}, indent=2))
    for mode, s in summary.items():
        std = s["std"] or [0.0] * len(s["mean"])
        print(f"{mode}: " + ", ".join(f"L{k + 1} {m:.3f} +- {d:.3f}" for k, (m, d) in enumerate(zip(s["mean"], std,
                                                                                                  strict=True))))


if __name__ == "__main__":
    main()
