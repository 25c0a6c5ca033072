"""The typed configuration tree: every class of bad input named by its key, time constants in ms, the JSON
schema for editors, ``--set`` parity with TOML, resolved configurations that round-trip. Nothing compiles."""

import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

from decolle_brian.cli import main
from decolle_brian.config import (
    Config,
    ConfigError,
    json_schema,
    key_info,
    keys,
    load_config,
    network_spec,
    params_table,
    resolve,
    to_toml,
)
from decolle_brian.data import DATASETS

RUNS = Path(__file__).resolve().parent.parent / "runs"
SECTIONS = [name for name, info in Config.model_fields.items() if isinstance(info.default_factory, type)]


def _raises(raw: dict, *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(raw)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return str(info.value)


# ---- each class of bad input, named by its key -----------------------------------------------------------------
def test_unknown_key_at_the_top():
    _raises({"nmae": "x"}, "unknown key(s) ['nmae']")


@pytest.mark.parametrize("section", SECTIONS)
def test_unknown_key_in_every_section(section):
    _raises({section: {"bogus": 1}}, f"unknown key(s) ['{section}.bogus']", f"valid keys in [{section}]")


@pytest.mark.parametrize("key, value, expected", [
    ("seed", "1", "integer"), ("name", 3, "string"), ("data.train_samples", 1.5, "integer"),
    ("neuron.alpha", "0.9", "integer or number"), ("learning.lr", True, "integer or number"),
    ("learning.surrogate_params", 3, "table"), ("training.progress", 1, "boolean"), ("device.threads", "2", "integer"),
    ("recording.variables", "u", "array"), ("recording.neurons", 1.5, "integer or array or string"),
    ("learning", 3, "table"),
])
def test_wrong_type_names_the_key(key, value, expected):
    *parents, leaf = key.split(".")
    raw = node = {}
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    _raises(raw, f"{key}: expected {expected}")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("section, key", [("neuron", "alpha"), ("neuron", "wrp"), ("learning", "lr"),
                                          ("learning", "lr_drop_factor"), ("recording", "max_mb")])
def test_nan_and_inf_refused(section, key, value):
    _raises({section: {key: value}}, f"{section}.{key}: must be a finite number")


@pytest.mark.parametrize("section, key, value, bound", [
    ("neuron", "alpha", 1.0, "< 1"), ("neuron", "beta", 0.0, "> 0"), ("neuron", "alpharp", -0.5, "> 0"),
    ("neuron", "wrp", -1, ">= 0"), ("learning", "lr", -1e-3, ">= 0"), ("learning", "dropout", 1.0, "< 1"),
    ("learning", "beta2", 1.0, "< 1"), ("learning", "eps", 0.0, "> 0"), ("learning", "lc_ampl", 0, "> 0"),
    ("learning", "burnin", -1, ">= 0"), ("learning", "lr_drop_factor", 0.5, ">= 1"), ("seed", None, -1, ">= 0"),
    ("training", "epochs", 0, ">= 1"), ("device", "threads", 0, ">= 1"), ("data", "augment_shift", -2, ">= 0"),
    ("recording", "every_steps", 0, ">= 1"), ("neuron", "tau_mem_ms", 0, "> 0"),
])
def test_out_of_bounds_names_the_key(section, key, value, bound):
    raw = {section: value} if key is None else {section: {key: value}}
    name = section if key is None else f"{section}.{key}"
    _raises(raw, f"{name}: must be {bound}")


def test_choices_name_the_key():
    _raises({"learning": {"optimizer": "adam"}}, "learning.optimizer: 'adam' is not one of ['sgd', 'adamax']")
    _raises({"device": {"name": "gpu"}}, "device.name: 'gpu' is not one of")
    _raises({"data": {"dataset": "cifar"}}, "data.dataset: 'cifar' is not one of")
    _raises({"network": {"mode": 1}}, "network.mode: 1 is not one of ['exact', 'event']")


@pytest.mark.parametrize("raw, message", [
    ({"recording": {"neurons": [1, "a"]}}, "recording.neurons[1]: expected integer, got string 'a'"),
    ({"recording": {"layers": [1.5]}}, "recording.layers[0]: expected integer"),
    ({"network": {"layers": ["x"]}}, "network.layers[0]: expected integer or table"),
    ({"learning": {"surrogate_params": {"slope": "x"}}}, "learning.surrogate_params.slope: expected integer or number"),
    ({"data": {"dataset": "dvsgesture", "params": {"users": [1, "a"]}}}, "data.params.users[1]: expected integer"),
])
def test_inner_positions_are_named(raw, message):
    assert _raises(raw, message).count(":") == 1  # one message: not one per member of a union


@pytest.mark.parametrize("data, message", [
    ({"dataset": "digits", "test_params": {"split_seed": 1}}, "data.test_params.split_seed: the train / test split"),
    ({"dataset": "dvsgesture", "params": {"users": [1, 2]}}, "alone it makes the test split the training split"),
    ({"dataset": "dvsgesture", "test_params": {"users": [24]}}, "alone it makes the test split the training split"),
    ({"dataset": "dvsgesture", "params": {"users": [1, 2]}, "test_params": {"users": [2, 24]}},
     "data.test_params.users: [2] also in data.params.users"),
    ({"dataset": "digits", "test_samples": 10, "test_params": {"max_samples": 5}}, "data.test_params.max_samples"),
])
def test_no_test_sample_is_a_training_sample(data, message):
    """data.test_params may present the test split otherwise, never choose test samples among the training ones:
    the data set's split_keys are the same for both splits (digits' split_seed) or each split's own, disjoint
    (DvsGesture's users; given in data.params alone they made both splits the same users)."""
    _raises({"data": data}, message)
    resolve({"data": {"dataset": "digits", "train_samples": 10, "test_params": {"max_samples": 5}}})  # no conflict


def test_every_bad_key_is_reported_at_once():
    message = _raises({"learning": {"lr": -1, "lrr": 1}, "neuron": {"alpha": 2.0}})
    assert "learning.lrr" in message and "learning.lr:" in message and "neuron.alpha" in message


# ---- data.params: keys and types from the data set's own constructor --------------------------------------------
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_data_params_unknown_key(dataset):
    message = _raises({"data": {"dataset": dataset, "params": {"bogus": 1}}}, "data.params.bogus")
    assert "n_steps" in message  # the valid keys are listed


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_data_params_wrong_type(dataset):
    _raises({"data": {"dataset": dataset, "params": {"seed": "abc"}}}, "data.params.seed: expected integer")


def test_data_params_follow_the_signature():
    assert set(params_table("dvsgesture").model_fields) >= {"downsample", "users", "layout"}
    resolve({"data": {"dataset": "dvsgesture", "params": {"users": [1, 2], "downsample": 2},
                      "test_params": {"users": [24]}}})
    _raises({"data": {"dataset": "dvsgesture", "params": {"users": [1, "x"]}}}, "data.params.users")
    _raises({"data": {"dataset": "nmnist", "params": {"downsample": 2}}}, "data.params.downsample")
    # a number parameter takes an integer; given values are stored as given (no defaults filled in)
    config = resolve({"data": {"dataset": "mnist", "params": {"max_rate_hz": 100}}})
    assert config["data"]["params"] == {"max_rate_hz": 100}


def test_max_samples_given_twice():
    _raises({"data": {"params": {"max_samples": 10}, "train_samples": 20}}, "data.params.max_samples",
            "data.train_samples")
    assert resolve({"data": {"params": {"max_samples": 10}}})["data"]["params"] == {"max_samples": 10}


@pytest.mark.parametrize("override, message", [
    ("data.params.bogus=1", "data.params.bogus"),
    ('data.params.n_steps="abc"', "data.params.n_steps: expected integer"),
])
def test_data_params_cli_exit_2_before_anything(tmp_path, capsys, override, message):
    assert main(["train", str(RUNS / "digits.toml"), "--set", override, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_sweep_axis_over_data_params_is_checked(tmp_path):
    from decolle_brian.sweep import SweepError, load_sweep

    (tmp_path / "base.toml").write_text((RUNS / "digits.toml").read_text())
    spec = tmp_path / "s.toml"
    spec.write_text('[sweep]\nbase = "base.toml"\n[grid]\n"data.params.n_stepz" = [10, 20]\n')
    with pytest.raises(SweepError, match=r"data.params.n_stepz"):
        load_sweep(spec)


# ---- time constants in ms ------------------------------------------------------------------------------------
def test_time_constants_in_ms():
    config = resolve({"neuron": {"tau_mem_ms": 20.0, "tau_syn_ms": 5, "tau_ref_ms": 2.0}})
    assert config["neuron"] == {"alpha": math.exp(-1 / 20), "beta": math.exp(-1 / 5), "alpharp": math.exp(-1 / 2),
                                "wrp": 1.0}  # stored as decays only: a run folder's config.toml reads back the same
    same = resolve({"neuron": {"alpha": math.exp(-1 / 20), "beta": math.exp(-1 / 5), "alpharp": math.exp(-1 / 2)}})
    assert config == same
    assert network_spec(config, 64, 10).structure_key() == network_spec(same, 64, 10).structure_key()
    mixed = resolve({"neuron": {"tau_mem_ms": 20.0, "beta": 0.5}})["neuron"]
    assert mixed["alpha"] == math.exp(-1 / 20) and mixed["beta"] == 0.5 and mixed["alpharp"] == 0.65


@pytest.mark.parametrize("tau, decay", [("tau_mem_ms", "alpha"), ("tau_syn_ms", "beta"), ("tau_ref_ms", "alpharp")])
def test_ms_and_decay_both_given(tau, decay):
    _raises({"neuron": {tau: 10.0, decay: 0.9}}, f"neuron.{decay}", f"neuron.{tau}", "both given")


def test_ms_too_short_for_a_decay():
    _raises({"neuron": {"tau_mem_ms": 1e-300}}, "neuron.tau_mem_ms", "outside (0, 1)")


# ---- resolved configurations round-trip; --set is TOML ---------------------------------------------------------
@pytest.mark.parametrize("path", sorted(RUNS.glob("*.toml")), ids=lambda p: p.name)
def test_resolved_config_round_trips(path, tmp_path):
    config = load_config(path)
    stored = tmp_path / "config.toml"
    stored.write_text(to_toml(config))
    again = load_config(stored)
    assert again == config
    assert json.dumps(again) == json.dumps(config)  # same types and key order too
    assert to_toml(again) == to_toml(config)


@pytest.mark.parametrize("key, text", [
    ("learning.lr", "3e-4"), ("network.layers", "[64, {kind = 'dense', n = 8}]"), ("data.params.n_steps", "20"),
    ("recording.neurons", "'all'"), ("recording.neurons", "[0, 3]"), ("training.progress", "false"),
    ("learning.surrogate_params", "{ slope = 5 }"), ("neuron.wrp", "2"), ("data.dataset", "mnist"),
])
def test_set_matches_the_same_value_in_toml(tmp_path, key, text):
    *parents, leaf = key.split(".")
    body = (RUNS / "digits.toml").read_text()
    raw = tomllib.loads(body)
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = tomllib.loads(f"v = {text}")["v"] if key != "data.dataset" else text
    import tomli_w

    edited = tmp_path / "edited.toml"
    edited.write_text(tomli_w.dumps(raw))
    assert load_config(RUNS / "digits.toml", [f"{key}={text}"]) == load_config(edited)


def test_set_errors_name_the_key():
    with pytest.raises(ConfigError, match="learning.lr.x: lr is not a table"):
        load_config(RUNS / "digits.toml", ["learning.lr.x=1"])


# ---- the JSON schema -------------------------------------------------------------------------------------------
def _schema_keys(schema: dict, node: dict, prefix: str = "") -> dict[str, dict]:
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    out = {}
    for name, sub in node.get("properties", {}).items():
        target = schema["$defs"][sub["$ref"].rsplit("/", 1)[1]] if "$ref" in sub else sub
        if "properties" in target and name not in ("params",):
            out.update(_schema_keys(schema, target, f"{prefix}{name}."))
        else:
            out[prefix + name] = sub
    return out


def test_json_schema_is_valid_and_covers_every_key():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    described = _schema_keys(schema, schema)
    assert set(described) == set(keys()) and len(described) > 40
    for key, sub in described.items():
        assert sub.get("description"), f"{key} has no description"
    assert "tau_mem_ms" in schema["$defs"]["NeuronSection"]["properties"]


def test_json_schema_accepts_shipped_configs_and_refuses_bad_ones():
    validator = jsonschema.Draft202012Validator(json_schema())
    for path in sorted(RUNS.glob("*.toml")):
        assert not list(validator.iter_errors(tomllib.loads(path.read_text()))), path
    bad = [{"learning": {"lrr": 1}}, {"neuron": {"alpha": 1.5}}, {"device": {"name": "gpu"}},
           {"data": {"dataset": "nmnist", "params": {"bogus": 1}}}, {"data": {"params": {"n_steps": "abc"}}},
           {"network": {"layers": [{"kind": "conv", "channels": 4}]}}]
    for raw in bad:
        assert list(validator.iter_errors(raw)), raw


def test_schema_command(tmp_path):
    out = tmp_path / "schema.json"
    assert main(["schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(json.dumps(json_schema()))


# ---- sweep keys, names, layering ------------------------------------------------------------------------------
def test_key_info():
    assert key_info("learning.burnin").integer and not key_info("learning.lr").integer
    assert key_info("data.params.anything").annotation is not None
    with pytest.raises(ConfigError, match="'neuron.tau' is not a configuration key"):
        key_info("neuron.tau")
    with pytest.raises(ConfigError, match="'learning' is a table"):
        key_info("learning")


def test_config_and_spec_import_neither_sympy_nor_brian2():
    code = ("import sys, decolle_brian.config, decolle_brian.network.spec; "
            "print(sorted(m for m in ('sympy', 'brian2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- a run folder written before the typed tree still loads identically ---------------------------------------
STORED_BEFORE = """\
name = "digits"
seed = 0

[data]
dataset = "digits"
root = ""
train_samples = 0
test_samples = 0
augment_shift = 0

[data.params]
encoder = "poisson"
n_steps = 20

[network]
layers = [
    256,
    256,
]
mode = "event"

[neuron]
alpha = 0.97
beta = 0.92
alpharp = 0.65
wrp = 1.0

[learning]
loss = "smoothl1"
surrogate = "fast_sigmoid"
optimizer = "sgd"
lr = 1.0
lr_drop_factor = 1.5
lr_drop_interval = 1
beta2 = 0.95
eps = 1e-08
dropout = 0.5
lc_ampl = 0.5
burnin = 10

[learning.surrogate_params]
slope = 10

[training]
epochs = 6
chunk_samples = 32
eval_every = 1
checkpoint_every = 256
progress = true

[device]
name = "cpp_standalone"
threads = 1
build_dir = ""
runtime_target = "cython"

[recording]
variables = []
layers = []
neurons = [
    0,
    3,
]
synapses = 4
train_every = 0
test_samples = "first_of_class"
every_steps = 1
weights_every = 0
weights = "auto"
max_mb = 100.0
"""


def test_stored_config_from_the_previous_writer_loads_identically(tmp_path):
    """config.toml as the previous resolver wrote it (digits with overrides, an integer surrogate parameter, the
    then default runtime_target): same values, same types, same structure key as before (resume finds its build
    and checkpoint)."""
    path = tmp_path / "config.toml"
    path.write_text(STORED_BEFORE)
    config = load_config(path)
    assert config == tomllib.loads(STORED_BEFORE)
    assert config["learning"]["surrogate_params"] == {"slope": 10}
    assert isinstance(config["learning"]["surrogate_params"]["slope"], int)
    assert config["device"]["runtime_target"] == "cython"
    assert network_spec(config, 64, 10, (1, 8, 8)).structure_key() == "d05a28db0958"  # computed before the change
    assert to_toml(config) == STORED_BEFORE


# ---- training.batch_size: online (1) by default; batches for dense and conv layers in mode 'exact' ---------------
def test_batch_size_one_is_online_learning_unchanged():
    # 1 is the default and is not written: a resolved configuration is what it was before the key existed
    assert resolve({"training": {"batch_size": 1}}) == resolve({})
    assert "batch_size" not in resolve({})["training"]
    assert key_info("training.batch_size").integer
    assert json_schema()["$defs"]["TrainingTable"]["properties"]["batch_size"]["default"] == 1


@pytest.mark.parametrize("value", [2, 72])
def test_batch_size_above_one_for_dense_exact_networks(value):
    config = resolve({"training": {"batch_size": value}})
    assert config["training"]["batch_size"] == value
    assert network_spec(config, 64, 10).batch_size == value


@pytest.mark.parametrize("optimizer", ["sgd", "adamax"])
def test_batch_size_above_one_for_conv_exact_networks(optimizer):
    layers = [{"kind": "conv", "channels": 2, "kernel": 3, "padding": 1, "pool": 2}, 8]
    config = resolve({"network": {"layers": layers}, "learning": {"optimizer": optimizer},
                      "training": {"batch_size": 4}})
    spec = network_spec(config, 64, 10, (1, 8, 8))
    assert (spec.mode, spec.batch_size, [layer.kind for layer in spec.layers]) == ("exact", 4, ["conv", "dense"])


def test_batch_size_above_one_for_dense_event_networks_with_sgd():
    config = resolve({"network": {"mode": "event"}, "learning": {"optimizer": "sgd"}, "training": {"batch_size": 4}})
    spec = network_spec(config, 64, 10)
    assert (spec.mode, spec.batch_size, spec.learning.optimizer) == ("event", 4, "sgd")


@pytest.mark.parametrize(("raw", "reason"), [
    ({"network": {"mode": "event"}, "learning": {"optimizer": "adamax"}},
     "network.mode = 'event' with learning.optimizer = 'adamax': Adamax at every step cannot be lazy"),
    ({"network": {"mode": "event", "layers": [{"kind": "conv", "channels": 2, "kernel": 3}]},
      "learning": {"optimizer": "sgd"}}, "conv layers in network.mode = 'event'"),
    ({"recording": {"variables": ["u"]}}, "recording.variables"),
])
def test_batch_size_above_one_refused_elsewhere_with_key_reason_and_fix(raw, reason):
    raw = {**raw, "training": {"batch_size": 4}}
    _raises(raw, "training.batch_size = 4 is not built for this configuration", reason,
            "Set training.batch_size = 1")
    _raises({"training": {"batch_size": 0}}, "training.batch_size: must be >= 1")


def test_batch_size_cli_exit_2_before_anything(tmp_path, capsys):
    # digits.toml is mode 'event' with SGD (batches built); with Adamax its batches are refused
    assert main(["train", str(RUNS / "digits.toml"), "--set", "training.batch_size=4", "--set",
                 'learning.optimizer="adamax"', "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "training.batch_size = 4" in err and "cannot be lazy" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
