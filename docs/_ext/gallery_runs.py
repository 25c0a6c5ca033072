"""Shared by the studies gallery (docs/studies/): find an ``analysis/`` script, train the small digits run a
study needs on the runtime device, and show the PNG figures the study wrote. ``docs/conf.py`` puts this
folder on ``sys.path``; outside the docs build, run a study's command line on real runs instead
(``python analysis/NAME.py RUN_DIR ...``)."""

import importlib.util
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
