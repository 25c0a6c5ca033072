"""Import check: a run exported to NIR, executed outside the package, against the package's own evaluation.

For a run folder: export its checkpoint (``decolle_brian.export.export_nir``), write its test split's event
counts to HDF5, evaluate the checkpoint with the package (Brian2, as ``decolle-brian eval``; or the NumPy
reference model the equivalence tests tie to it), run ``benchmarks/nir/reader.py`` in the simulator's own
Python (``benchmarks/nir/make_env.sh``) once per integration scheme, and compare per sample and layer: the
spike count and the majority-vote prediction, and per layer the accuracy. Writes
``benchmarks/out/nir_compare.json`` (or ``--json``) and prints a table.

    .venv/bin/python benchmarks/nir/compare.py RUN_DIR [--nir-python benchmarks/out/nirenv/bin/python]
        [--engine brian|reference] [--integration exp euler] [--time-constants exact|euler]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from decolle_brian.config import network_spec, read_toml, resolve
from decolle_brian.data import load_dataset
from decolle_brian.export import export_nir
from decolle_brian.network.params import expected_shapes
from decolle_brian.store import read_checkpoint

HERE = Path(__file__).resolve().parent
READER = HERE / "reader.py"
DEFAULT_NIR_PYTHON = HERE.parent / "out" / "nirenv" / "bin" / "python"


def open_run(run_dir: Path, data_root: str | None = None):
    """(config, spec, params, test set) of a run folder."""
    config = resolve(read_toml(Path(run_dir) / "config.toml", "run configuration"))
    data = config["data"]
    limit = {"max_samples": data["test_samples"]} if data["test_samples"] else {}
    test_set = load_dataset(data["dataset"], "test", data_root or data["root"] or None, **dict(data["params"]), **limit)
    shape = tuple(test_set.input_shape)
    spec = network_spec(config, int(np.prod(shape)), test_set.n_classes, shape, check_rule=False)
    params, _ = read_checkpoint(run_dir, expected_shapes(spec), spec.structure_key())
    return config, spec, params, test_set


def write_inputs(test_set, spec, path: Path) -> np.ndarray:
    """Counts (N, T, *what the first layer takes) and labels of ``test_set`` to HDF5; returns the labels."""
    first = spec.layers[0]
    samples = [test_set[i][:2] for i in range(len(test_set))]
    counts = np.stack([np.asarray(c, dtype=np.float32) for c, _ in samples])
    counts = counts.reshape(counts.shape[:2] + ((-1,) if first.kind != "conv" else tuple(first.in_shape)))
    labels = np.array([int(label) for _, label in samples])
    with h5py.File(path, "w") as f:
        f.create_dataset("counts", data=counts, compression="gzip")
        f.create_dataset("labels", data=labels)
    return labels


def package_brian(run_dir: Path, config, spec, params, test_set) -> dict[str, np.ndarray]:
    """Per-sample spike counts and predictions (N, L) of the package's Brian2 evaluation (no learning)."""
    from decolle_brian.experiment import Experiment  # noqa: PLC0415 - Brian2 only for this engine
    from decolle_brian.training import iter_chunks  # noqa: PLC0415

    experiment = Experiment.from_config(config, check=("test",))
    sim = experiment.simulator()
    results = []
    for _, _, chunk in iter_chunks(sim, test_set, np.arange(len(test_set)), params, learn=False):
        results += chunk
    return {"spike_counts": np.array([r.spikes for r in results]),
            "predictions": np.array([r.predictions for r in results])}


def package_reference(run_dir: Path, config, spec, params, test_set) -> dict[str, np.ndarray]:
    """The same from the NumPy reference model ``decolle_brian.reference`` (equal to Brian2 by the tests)."""
    from decolle_brian import reference as ref  # noqa: PLC0415

    layers = []
    for index, layer in enumerate(spec.layers, start=1):
        key = f"layer{index}"
        if layer.kind == "conv":
            layers.append(ref.ConvLayer(K=params[f"{key}.K"], b=params[f"{key}.b"], G=params[f"{key}.G"],
                                        g=params[f"{key}.g"], padding=layer.padding, pool=layer.pool,
                                        in_shape=tuple(layer.in_shape)))
        else:
            layers.append(ref.DenseLayer(W=params[f"{key}.W"], b=params[f"{key}.b"], G=params[f"{key}.G"],
                                         g=params[f"{key}.g"]))
    neuron, burnin = config["neuron"], config["learning"]["burnin"]
    consts = ref.Constants(alpha=neuron["alpha"], beta=neuron["beta"], alpharp=neuron["alpharp"], wrp=neuron["wrp"])
    counts, predictions = [], []
    for i in range(len(test_set)):
        out = ref.run_sample(layers, test_set[i][0], None, n_classes=spec.n_classes, consts=consts, burnin=burnin)
        counts.append([int(s.sum()) for s in out["spikes"]])
        predictions.append([ref.majority_vote(y, burnin) for y in out["y"]])
    return {"spike_counts": np.array(counts), "predictions": np.array(predictions)}


ENGINES = {"brian": package_brian, "reference": package_reference}


def run_reader(nir_python: Path, graph: Path, inputs: Path, out: Path, integration: str) -> dict:
    """Run reader.py in the simulator's Python; its per-sample results and attributes."""
    began = time.time()
    done = subprocess.run([str(nir_python), str(READER), str(graph), str(inputs), str(out),
                           "--integration", integration], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"reader.py ({integration}) failed with exit {done.returncode}:\n{done.stderr[-3000:]}")
    with h5py.File(out, "r") as f:
        result = {key: np.asarray(f[key]) for key in ("spike_counts", "predictions")}
        result.update({key: f.attrs[key] for key in f.attrs})
    result["subprocess_s"] = time.time() - began
    return result


def agreement(package: dict, nir_run: dict, labels: np.ndarray) -> dict:
    """Per layer: accuracies, how many samples have the same spike count / prediction, count differences."""
    diff = nir_run["spike_counts"] - package["spike_counts"]
    return {
        "accuracy_package": (package["predictions"] == labels[:, None]).mean(0).tolist(),
        "accuracy_nir": (nir_run["predictions"] == labels[:, None]).mean(0).tolist(),
        "same_prediction": (nir_run["predictions"] == package["predictions"]).mean(0).tolist(),
        "same_spike_count": (diff == 0).mean(0).tolist(),
        "mean_spikes_package": package["spike_counts"].mean(0).tolist(),
        "mean_spikes_nir": nir_run["spike_counts"].mean(0).tolist(),
        "mean_abs_count_diff": np.abs(diff).mean(0).tolist(),
        "max_abs_count_diff": np.abs(diff).max(0).tolist(),
    }


def compare(run_dir: str | Path, nir_python: str | Path = DEFAULT_NIR_PYTHON, *, engine: str = "brian",
            integrations: tuple[str, ...] = ("exp", "euler"), data_root: str | None = None,
            work: Path | None = None, time_constants: str = "exact") -> dict:
    """The import check of one run folder (see the module docstring); returns the report."""
    run_dir = Path(run_dir)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(work or scratch)
        config, spec, params, test_set = open_run(run_dir, data_root)
        graph = export_nir(run_dir, work / "network.nir", data_root, time_constants=time_constants)
        labels = write_inputs(test_set, spec, work / "inputs.h5")
        began = time.time()
        package = ENGINES[engine](run_dir, config, spec, params, test_set)
        report = {"run_dir": str(run_dir), "engine": engine, "samples": len(labels), "time_constants": time_constants,
                  "layers": [layer.n for layer in spec.layers], "package_s": time.time() - began,
                  "package": package, "labels": labels, "nir": {}}
        for integration in integrations:
            nir_run = run_reader(Path(nir_python), graph, work / "inputs.h5", work / f"out-{integration}.h5",
                                 integration)
            report["nir"][integration] = {"agreement": agreement(package, nir_run, labels), **nir_run}
    return report


def _table(report: dict) -> str:
    lines = [f"{report['run_dir']}: {report['samples']} test samples, layers {report['layers']}, "
             f"package engine {report['engine']}, time constants {report['time_constants']}"]
    for integration, result in report["nir"].items():
        a = result["agreement"]
        for layer in range(len(report["layers"])):
            lines.append(
                f"  {integration:5s} L{layer + 1}: accuracy package {100 * a['accuracy_package'][layer]:6.2f} %  "
                f"NIR {100 * a['accuracy_nir'][layer]:6.2f} %  "
                f"same prediction {100 * a['same_prediction'][layer]:6.2f} %"
                f"  same spike count {100 * a['same_spike_count'][layer]:6.2f} %  mean spikes/sample "
                f"{a['mean_spikes_package'][layer]:.2f} vs {a['mean_spikes_nir'][layer]:.2f} "
                f"(mean |diff| {a['mean_abs_count_diff'][layer]:.2f})")
        lines.append(f"  {integration:5s} snnTorch's own importer: {result['stock_importer']}")
    return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k not in ("spike_counts", "predictions")}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--nir-python", default=str(DEFAULT_NIR_PYTHON),
                        help="Python of the simulator environment (benchmarks/nir/make_env.sh)")
    parser.add_argument("--engine", choices=sorted(ENGINES), default="brian")
    parser.add_argument("--integration", nargs="+", default=["exp", "euler"], choices=("exp", "euler"))
    parser.add_argument("--data", help="data folder (overrides the run's data.root)")
    parser.add_argument("--time-constants", choices=("exact", "euler"), default="exact")
    parser.add_argument("--json", default=str(HERE.parent / "out" / "nir_compare.json"))
    args = parser.parse_args(argv)
    report = compare(args.run_dir, args.nir_python, engine=args.engine, integrations=tuple(args.integration),
                     data_root=args.data, time_constants=args.time_constants)
    print(_table(report))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    report.pop("labels")
    Path(args.json).write_text(json.dumps(_jsonable(report), indent=2))
    print(f"written {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
