"""
Comparing surrogate gradients
=============================

``analysis/compare_surrogates.py`` compares runs that differ in the surrogate derivative sigma'(u): the
surrogates themselves (derived again from each run's configuration), the test accuracy per layer, and, from
the recorded membrane potentials, the distribution of U the rule saw while learning with the surrogate's mean
over it (how much gradient gets through). Here two small runs differ only in the surrogate
(``fast_sigmoid`` and ``boxcar``). The command on real runs::

    python analysis/compare_surrogates.py RUN_DIR [RUN_DIR ...] --out FIGURES
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
# Two small runs, the same but for ``learning.surrogate``, each recording U every 10th training sample.
recording = """
[network]
layers = [32, 16]
[recording]
variables = ["u"]
neurons = 8
train_every = 10
test_samples = "none"
"""
runs = [tiny_run(out, "fast-sigmoid", recording),
        tiny_run(out, "boxcar", recording, surrogate="boxcar")]

# %%
# The study on both runs:
surrogates = study("compare_surrogates")
surrogates.main([str(r) for r in runs] + ["--out", str(out / "figures")])
show(sorted((out / "figures").glob("compare_surrogates*.png")))
