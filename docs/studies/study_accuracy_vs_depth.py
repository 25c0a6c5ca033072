"""
Accuracy and cost against depth
===============================

``analysis/accuracy_vs_depth.py``: every DECOLLE layer has its own readout, so one run gives an accuracy per
depth. Here one small three-layer network learns 40 digits for two epochs; the study draws the final test
accuracy of each layer's readout, the accuracy of every layer over the epochs and the synaptic operations
per inference of each layer. The command on real runs::

    python analysis/accuracy_vs_depth.py RUN_DIR [RUN_DIR ...] --out FIGURES
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
# Train a small three-layer run (two epochs, evaluated after each), then run the study on it.
run_dir = tiny_run(out, "depth", """
[network]
layers = [32, 32, 16]
[training]
epochs = 2
""")
depth = study("accuracy_vs_depth")
depth.main([str(run_dir), "--out", str(out / "figures")])
show(sorted((out / "figures").glob("accuracy_vs_depth*.png")))
