"""NIR export (decolle_brian.export, docs/nir.md): the graph, its parameters, and a run of it outside the package.

- The graph passes NIR's own validation, survives ``nir.write``/``nir.read``, and its parameters are the
  checkpoint's (weights, biases as thresholds, readouts, time constants from alpha, beta, alpharp).
- The import check: ``benchmarks/nir/reader.py`` runs the exported file in a separate Python with PyTorch and
  NIRTorch (``benchmarks/nir/make_env.sh``); per sample and layer its spike counts and predictions equal the
  package's, and its accuracy is the one the package's Brian2 evaluation stored. Without that environment (and
  no way to make it) the check skips locally and fails under CI.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import _in_ci
from recorded_run import recorded_run

from decolle_brian import reference as ref
from decolle_brian.cli import build_parser, main
from decolle_brian.errors import StoreError
from decolle_brian.export import EXPORTERS, export_nir
from decolle_brian.export.to_nir import DT, build_graph, euler_time_constant, time_constant
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import ConvLayerSpec, DenseLayerSpec, NetworkSpec, NeuronParams
from decolle_brian.store import read_checkpoint

nir = pytest.importorskip("nir")  # a core dependency: absent only in a broken install

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "benchmarks" / "nir"))
import compare  # noqa: E402

NEURON = NeuronParams(alpha=0.95, beta=0.9, alpharp=0.6, wrp=1.5)


def _dense_spec():
    return NetworkSpec(n_inputs=12, layers=(DenseLayerSpec(7), DenseLayerSpec(5)), n_classes=3, neuron=NEURON)


def _conv_spec():
    conv = ConvLayerSpec(channels=3, kernel=3, in_shape=(2, 7, 7), padding=1, pool=2)
    return NetworkSpec(n_inputs=2 * 7 * 7, layers=(conv, DenseLayerSpec(6)), n_classes=4, neuron=NEURON,
                       input_shape=(2, 7, 7))


def _roundtrip(graph, tmp_path):
    nir.write(tmp_path / "g.nir", graph)
    return nir.read(tmp_path / "g.nir")


@pytest.mark.parametrize("make_spec", [_dense_spec, _conv_spec], ids=["dense", "conv"])
def test_graph_is_valid_and_round_trips_with_the_parameters(make_spec, tmp_path):
    spec = make_spec()
    params = init_params(spec, np.random.default_rng(1))
    graph = _roundtrip(build_graph(spec, params, burnin=3), tmp_path)
    graph.infer_types()  # NIR's validation again on what was read back
    assert graph.check_types()
    taus = {"tau_syn": time_constant(NEURON.beta), "tau_mem": time_constant(NEURON.alpha)}
    for index, layer in enumerate(spec.layers, start=1):
        key, name = f"layer{index}", f"layer{index}_"
        synapse = graph.nodes[name + "synapse"]
        if layer.kind == "conv":
            assert isinstance(synapse, nir.Conv2d)
            np.testing.assert_array_equal(synapse.weight, params[f"{key}.K"])
            assert list(synapse.padding) == [layer.padding] * 2 and list(synapse.stride) == [1, 1]
            np.testing.assert_array_equal(synapse.bias, 0)
            threshold = graph.nodes[name + "spike"].threshold
            assert threshold.shape == layer.full_shape
            np.testing.assert_array_equal(threshold, -params[f"{key}.b"][:, None, None] * np.ones(layer.full_shape))
            pool = graph.nodes[name + "pool"]
            assert isinstance(pool, nir.SumPool2d) and list(pool.kernel_size) == [layer.pool] * 2
            np.testing.assert_array_equal(graph.nodes[name + "pool_spike"].threshold, 0.5)
            assert (name + "pool_spike", name + "spikes") in graph.edges
        else:
            assert isinstance(synapse, nir.Linear)
            np.testing.assert_array_equal(synapse.weight, params[f"{key}.W"])
            np.testing.assert_array_equal(graph.nodes[name + "spike"].threshold, -params[f"{key}.b"])
        traces = graph.nodes[name + "traces"]
        assert isinstance(traces, nir.CubaLI)
        for field, tau in taus.items():
            np.testing.assert_allclose(getattr(traces, field), tau, rtol=1e-15)
        np.testing.assert_array_equal(traces.r, 1.0)
        np.testing.assert_array_equal(traces.v_leak, 0.0)
        refractory = graph.nodes[name + "refractory"]
        assert isinstance(refractory, nir.LI)
        np.testing.assert_allclose(refractory.tau, time_constant(NEURON.alpharp), rtol=1e-15)
        np.testing.assert_array_equal(graph.nodes[name + "refr_weight"].scale, -NEURON.wrp)
        for edge in [(name + "spike", name + "refr_weight"), (name + "refr_weight", name + "refractory"),
                     (name + "refractory", name + "spike"), (name + "traces", name + "spike")]:
            assert edge in graph.edges
        readout = graph.nodes[name + "readout"]
        np.testing.assert_array_equal(readout.weight, params[f"{key}.G"])
        np.testing.assert_array_equal(readout.bias, params[f"{key}.g"])
        assert isinstance(graph.nodes[name + "y"], nir.Output)
    assert graph.metadata["dt"] == DT and graph.metadata["burnin"] == 3
    assert graph.metadata["alpha"] == NEURON.alpha and graph.metadata["alpharp"] == NEURON.alpharp


def test_time_constant_decays_exactly_and_refuses_what_has_none():
    for decay in (0.97, 0.92, 0.65):
        assert math.exp(-DT / time_constant(decay)) == pytest.approx(decay, rel=1e-15)
        assert 1 - DT / euler_time_constant(decay) == pytest.approx(decay, rel=1e-15)
    assert time_constant(0.97) == pytest.approx(32.83e-3, rel=1e-3)
    with pytest.raises(ValueError, match="decay must lie in"):
        time_constant(1.0)
    with pytest.raises(ValueError, match="choose one of"):
        build_graph(_dense_spec(), init_params(_dense_spec(), np.random.default_rng(0)), time_constants="rk4")


def test_export_formats_are_the_command_choices():
    parser = build_parser()
    export = parser._subparsers._group_actions[0].choices["export"]
    choices = next(action.choices for action in export._actions if action.dest == "format")
    assert sorted(choices) == sorted(EXPORTERS)


def test_export_refuses_what_is_not_a_run(tmp_path, capsys):
    with pytest.raises(StoreError, match="not a run folder"):
        export_nir(tmp_path)
    assert main(["export", str(tmp_path)]) == StoreError.exit_code
    assert "config.toml missing" in capsys.readouterr().err


# ---- a trained run: the tiny recorded run of tests/recorded_run.py (trained once per session) -----------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return recorded_run(tmp_path_factory)


@pytest.mark.standalone
def test_exported_run_holds_the_checkpoint(run_dir, tmp_path, capsys):
    out = tmp_path / "net.nir"
    assert main(["export", str(run_dir), "--format", "nir", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    graph = nir.read(out)
    params, _ = read_checkpoint(run_dir)
    config, spec, _, _ = compare.open_run(run_dir)
    assert graph.metadata["burnin"] == config["learning"]["burnin"]
    for index in range(1, len(spec.layers) + 1):
        key, name = f"layer{index}", f"layer{index}_"
        np.testing.assert_array_equal(graph.nodes[name + "synapse"].weight, params[f"{key}.W"])
        np.testing.assert_array_equal(graph.nodes[name + "spike"].threshold, -params[f"{key}.b"])
        np.testing.assert_array_equal(graph.nodes[name + "readout"].weight, params[f"{key}.G"])
        np.testing.assert_array_equal(graph.nodes[name + "readout"].bias, params[f"{key}.g"])
        traces = graph.nodes[name + "traces"]
        assert traces.tau_mem.shape == (spec.layers[index - 1].n,)
        np.testing.assert_allclose(np.exp(-DT / traces.tau_mem), config["neuron"]["alpha"], rtol=1e-14)
        np.testing.assert_allclose(np.exp(-DT / traces.tau_syn), config["neuron"]["beta"], rtol=1e-14)
        np.testing.assert_allclose(np.exp(-DT / graph.nodes[name + "refractory"].tau), config["neuron"]["alpharp"],
                                   rtol=1e-14)


@pytest.mark.standalone
def test_export_needs_neither_brian_nor_sympy(run_dir, tmp_path):
    code = ("import sys; from decolle_brian.export import export_nir; "
            f"export_nir({str(run_dir)!r}, {str(tmp_path / 'n.nir')!r}); "
            "print(sorted(m for m in ('brian2', 'sympy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# ---- the import check: the exported file run by NIRTorch + PyTorch in their own Python ----------------------------
@pytest.fixture(scope="module")
def nir_python():
    """The simulator environment's Python: $DECOLLE_NIR_PYTHON, or benchmarks/nir/make_env.sh's (made if absent)."""
    given = os.environ.get("DECOLLE_NIR_PYTHON")
    if given:
        return Path(given)
    done = subprocess.run(["bash", str(PROJECT / "benchmarks" / "nir" / "make_env.sh")], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        why = f"benchmarks/nir/make_env.sh failed ({done.returncode}): {done.stderr[-1500:]}"
        if _in_ci():
            pytest.fail(f"CI=true but the NIR simulator environment cannot be made; {why}")
        pytest.skip(why)
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(("time_constants", "integration"), [("exact", "exp"), ("euler", "euler")])
def test_random_conv_network_runs_the_same_outside(nir_python, tmp_path, time_constants, integration):
    """Conv (padding, max-pool on U as sum-pool + threshold 1/2), flatten, dense: every spike as the reference,
    for an exponential-Euler reader of the exact time constants and a forward-Euler reader of the Euler ones."""
    spec = _conv_spec()
    rng = np.random.default_rng(4)
    params = init_params(spec, rng)
    params["layer1.b"] = params["layer1.b"] + 0.05  # active enough that pooling and refractoriness matter
    nir.write(tmp_path / "conv.nir", build_graph(spec, params, burnin=2, time_constants=time_constants))
    counts = rng.poisson(0.3, size=(6, 25, *spec.input_shape)).astype(np.float32)  # counts > 1 included
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["counts"] = counts
    result = compare.run_reader(nir_python, tmp_path / "conv.nir", tmp_path / "in.h5", tmp_path / "out.h5",
                                integration)
    conv, dense = spec.layers
    layers = [ref.ConvLayer(K=params["layer1.K"], b=params["layer1.b"], G=params["layer1.G"], g=params["layer1.g"],
                            padding=conv.padding, pool=conv.pool, in_shape=conv.in_shape),
              ref.DenseLayer(W=params["layer2.W"], b=params["layer2.b"], G=params["layer2.G"], g=params["layer2.g"])]
    consts = ref.Constants(alpha=NEURON.alpha, beta=NEURON.beta, alpharp=NEURON.alpharp, wrp=NEURON.wrp)
    expected = [ref.run_sample(layers, x, None, n_classes=spec.n_classes, consts=consts, burnin=2) for x in counts]
    spikes = np.array([[int(s.sum()) for s in out["spikes"]] for out in expected])
    assert spikes.min() > 0, "a silent layer would make this check empty"
    np.testing.assert_array_equal(result["spike_counts"], spikes)
    np.testing.assert_array_equal(result["predictions"],
                                  [[ref.majority_vote(y, 2) for y in out["y"]] for out in expected])


@pytest.mark.standalone
@pytest.mark.slow
def test_import_check_on_the_digits_run(run_dir, nir_python):
    """Every sample's spike count and prediction per layer as the package's, the accuracy the one Brian2 stored."""
    import json

    report = compare.compare(run_dir, nir_python, engine="reference", integrations=("exp",))
    result = report["nir"]["exp"]
    package = report["package"]
    assert package["spike_counts"].sum() > 0
    np.testing.assert_array_equal(result["spike_counts"], package["spike_counts"])
    np.testing.assert_array_equal(result["predictions"], package["predictions"])
    stored = json.loads((run_dir / "summary.json").read_text())["test_accuracy"]  # the Brian2 evaluation
    np.testing.assert_allclose(result["agreement"]["accuracy_nir"], stored, atol=1e-12)
    assert result["stock_importer"].startswith("refused")  # snnTorch's own importer knows no Scale/LI/Threshold
