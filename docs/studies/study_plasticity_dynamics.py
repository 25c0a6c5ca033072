"""
Plasticity dynamics during learning
===================================

``analysis/plasticity_dynamics.py`` follows the three factors of the rule (error, surrogate, presynaptic
trace) and the weight change of one layer's recorded synapses through training: their mean magnitudes
against the samples learned, which factor gates learning (the fraction of steps in which it is nearly zero),
and one synapse early and late in learning. The :doc:`tutorial <../auto_tutorials/tutorial_plasticity_dynamics>`
reads the same recordings step by step. The command on a real run::

    python analysis/plasticity_dynamics.py RUN_DIR --layer 1 --out FIGURES
"""

import importlib.util
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import decolle_brian as db


def study(name):
    """The analysis/ script NAME as a module (the folder is not a package: these are command-line scripts)."""
    here = Path.cwd().resolve()
    root = next(p for p in (here, *here.parents) if (p / "analysis" / f"{name}.py").is_file())
    spec = importlib.util.spec_from_file_location(name, root / "analysis" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_run(out, name, extra="", surrogate="fast_sigmoid"):
    """Train a small digits run on the runtime device (numpy: no compiler) and return its folder."""
    text = f"""
name = "{name}"
seed = 0
[data]
dataset = "digits"
train_samples = 30
test_samples = 20
[data.params]
n_steps = 40
[learning]
optimizer = "sgd"
surrogate = "{surrogate}"
lr = 1.0
burnin = 5
[device]
name = "runtime"
runtime_target = "numpy"
{extra}
"""
    path = Path(out) / f"{name}.toml"
    path.write_text(text)
    return db.train(db.load_config(path), Path(out) / "runs")


def show(paths):
    """Show the PNG figures a study wrote, pixel for pixel."""
    for path in paths:
        image = plt.imread(path)
        plt.figure(figsize=(image.shape[1] / 100, image.shape[0] / 100), dpi=100).figimage(image)
    plt.show()


out = Path(tempfile.mkdtemp(prefix="decolle-study-"))

# %%
# A small run that records the factors of 4 synapses per layer every 5th training sample.
run_dir = tiny_run(out, "plasticity", """
[network]
layers = [32, 16]
[recording]
variables = ["dw"]
synapses = 4
train_every = 5
test_samples = "none"
""")
dynamics = study("plasticity_dynamics")
dynamics.main([str(run_dir), "--layer", "1", "--out", str(out / "figures")])
show(sorted((out / "figures").glob("*.png")))
