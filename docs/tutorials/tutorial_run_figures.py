"""
Recording a run and drawing its figures
=======================================

A run records what its ``[recording]`` table asks for into ``RUN_DIR/recordings.h5`` (see the recording
page of the user guide for every variable and the file's layout), and ``decolle-brian plot RUN_DIR`` draws
every figure from the run folder alone, without Brian2. Here a small network learns digits for two epochs
while recording everything, and the plot command draws the figures shown below.
"""

# %%
# A small run that records every variable (``["all"]``): traces of 8 neurons per layer, the factors of 4
# synapses, spikes, readouts and weight snapshots, for every 10th training sample (test samples can be
# recorded too: ``test_samples = "first_of_class"``; left out here to keep the build short).
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import decolle_brian as db
from decolle_brian.cli import main as decolle_brian_command

out = Path(tempfile.mkdtemp(prefix="decolle-figures-"))
(out / "recorded.toml").write_text("""
name = "recorded"
seed = 0
[data]
dataset = "digits"
train_samples = 30
test_samples = 20
[data.params]
n_steps = 40
[network]
layers = [32, 16]
[learning]
optimizer = "sgd"
lr = 1.0
burnin = 5
[training]
epochs = 2
[device]
name = "runtime"
runtime_target = "numpy"
[recording]
variables = ["all"]
neurons = 8
synapses = 4
train_every = 10
weights_every = 20
test_samples = "none"
""")
run_dir = db.train(db.load_config(out / "recorded.toml"), out / "runs")
print(sorted(p.name for p in Path(run_dir).iterdir()))

# %%
# ``decolle-brian plot RUN_DIR --out DIR`` (here called from Python with the same arguments):
figures = out / "figures"
assert decolle_brian_command(["plot", str(run_dir), "--out", str(figures)]) == 0
written = sorted(figures.glob("*.png"))
print("\n".join(p.name for p in written))

# %%
# The figures, as written (PNG, paper width):
for path in written:
    image = plt.imread(path)
    plt.figure(figsize=(image.shape[1] / 100, image.shape[0] / 100), dpi=100).figimage(image)
plt.show()
