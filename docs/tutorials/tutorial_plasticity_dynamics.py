"""
Plasticity dynamics: the three factors of DECOLLE's rule while a network learns
================================================================================

Every weight of a DECOLLE network changes at every time step by a three-factor rule (see
:doc:`../model`):

.. code-block:: text

    dW_ij = -lr * bp_i * sigma'(U_i) * P_j
            error     surrogate     presynaptic trace

``bp_i`` is the layer's local error projected back through its fixed random readout, ``sigma'(U_i)`` the
surrogate derivative of the postsynaptic neuron's membrane potential, and ``P_j`` the presynaptic neuron's
filtered spike train. The rule is derived from the equation files by sympy (:doc:`../model/rules`). This
tutorial builds a small network, lets it learn a few digits online, records the three factors of a few
synapses and the weights, plots them, and reads the learning signal ``bp * sigma'(U)`` against the
surrogate. It runs in well under a minute on one core.
"""

# %%
# A small network
# ---------------
# A configuration is a TOML file; every key is in the :doc:`../reference/configuration`. Two dense spiking
# layers of 32 and 16 neurons learn 8x8 digits encoded as 40 ms of Poisson events, on the Brian2 runtime
# (numpy: no compiler). The ``[recording]`` table asks for the membrane potential ``u``, the error ``bp``,
# the surrogate ``sigma``, the learning signal ``delta``, the spikes ``s``, the factors of 4 synapses per
# layer (``dw``) and weight snapshots (``W``), for every 10th training sample.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import decolle_brian as db

out = Path(tempfile.mkdtemp(prefix="decolle-tutorial-"))


def show(fig, name):
    """Show a figure of :mod:`decolle_brian.plotting` here. The package draws without pyplot (no global
    state), so this page shows the PNG file that :func:`decolle_brian.save` writes, pixel for pixel."""
    (path,) = db.save(fig, out / "figures", name)
    image = plt.imread(path)
    shown = plt.figure(figsize=(image.shape[1] / 100, image.shape[0] / 100), dpi=100)
    shown.figimage(image)
    plt.show()

config_file = out / "plasticity.toml"
config_file.write_text("""
name = "plasticity"
seed = 3
[data]
dataset = "digits"
train_samples = 60
test_samples = 30
[data.params]
n_steps = 40
[network]
layers = [32, 16]
[learning]
optimizer = "sgd"
lr = 1.0
burnin = 5
[device]
name = "runtime"
runtime_target = "numpy"
[recording]
variables = ["u", "s", "bp", "sigma", "delta", "dw", "W"]
neurons = 4
synapses = 4
train_every = 10
weights_every = 20
test_samples = "none"
""")
config = db.load_config(config_file)

# %%
# Learn
# -----
# :func:`decolle_brian.train` builds the network, learns the 60 samples online (a weight step every
# millisecond) and evaluates the 30 test samples; it returns the run folder. Sixty samples seen once are far
# too few to learn ten digit classes (the main job, ``runs/digits.toml``, learns 1,437 samples for 6 epochs
# and reaches about 91 %), so expect an accuracy near chance: what this tutorial looks at is the rule at
# work, step by step, from the first samples on.
run_dir = db.train(config, out / "runs")
run = db.RunData(run_dir)
print("test accuracy per layer:", [f"{a:.0%}" for a in run.summary["test_accuracy"]])
print("recorded training samples:", [row["samples_seen"] for row in run.samples("train")])

# %%
# The three factors of a few synapses
# -----------------------------------
# :func:`decolle_brian.plot_three_factors` draws, for the recorded synapses of a layer that changed most,
# the error, the surrogate, the presynaptic trace, their product and the weight. Early in learning:
first = run.sample(run.samples("train")[0]["name"])
last = run.sample(run.samples("train")[-1]["name"])
show(db.plot_three_factors(first, layer=1), "three_factors_early")

# %%
# and for the last recorded sample, after 50 samples of learning:
show(db.plot_three_factors(last, layer=1), "three_factors_late")

# %%
# The weights
# -----------
# The snapshots (at the start, at the first chunk boundary after every 20 samples, and at the end) hold
# whole weight matrices of this small network; their histograms show how far learning has moved the
# initial weights.
weights = run.weights()
print("snapshots after samples:", [int(n) for n in weights["samples_seen"]])
show(db.plot_weight_histograms(weights), "weight_histograms")

# %%
# The recorded synapses' weights through the recorded training samples, step by step (each sample starts
# where the previous recorded one left off, 10 samples earlier):
fig, ax = plt.subplots(figsize=(6, 2.5))
for row in run.samples("train"):
    sample = run.sample(row["name"])
    steps = row["samples_seen"] * sample.arrays["t_ms"].size + np.arange(sample.arrays["t_ms"].size)
    for k in range(sample.arrays["L1/syn_w"].shape[1]):
        ax.plot(steps, sample.arrays["L1/syn_w"][:, k], color=f"C{k}", lw=1)
ax.set_xlabel("time step (recorded samples, 40 steps each)")
ax.set_ylabel("W (layer 1)")
fig.tight_layout()
plt.show()

# %%
# The learning signal against the surrogate
# -----------------------------------------
# The postsynaptic part of the rule is the learning signal ``delta = bp * sigma'(U)``: the error gated by the
# surrogate of the membrane potential. The surrogate of this run is the derived rule's own expression
# (``fast_sigmoid``, slope 10); :func:`decolle_brian.recording.surrogate_function` turns it into a NumPy
# function. Plotted against ``U`` at every learning step of the recorded neurons, the recorded ``sigma'``
# lies on the curve, and ``|delta| / |bp|`` is bounded by it: far from the threshold (U = 0) no error gets
# through, whatever its size.
from decolle_brian.derivation import derive  # noqa: E402
from decolle_brian.recording import surrogate_function  # noqa: E402

rule = derive(config["learning"]["loss"], config["learning"]["surrogate"], **config["learning"]["surrogate_params"])
sigma = surrogate_function(rule.surrogate)
u, bp, sig, delta = [], [], [], []
for row in run.samples("train"):
    sample = run.sample(row["name"])
    learning = sample.arrays["eta"] > 0
    for layer in (1, 2):
        u.append(sample.arrays[f"L{layer}/u"][learning].ravel())
        bp.append(sample.arrays[f"L{layer}/bp"][learning].ravel())
        sig.append(sample.arrays[f"L{layer}/sigma"][learning].ravel())
        delta.append(sample.arrays[f"L{layer}/delta"][learning].ravel())
u, bp, sig, delta = (np.concatenate(v) for v in (u, bp, sig, delta))

# the recorded quantities obey the rule: sigma' is the surrogate of U, and delta = bp * sigma'
assert np.allclose(sig, sigma(u), atol=1e-9), "recorded sigma' is not the surrogate of the recorded U"
assert np.allclose(delta, bp * sig, atol=1e-12), "recorded delta is not bp * sigma'"

grid = np.linspace(min(u.min(), -1), max(u.max(), 1), 400)
fig, (ax_sigma, ax_delta) = plt.subplots(1, 2, figsize=(8, 3))
ax_sigma.plot(grid, sigma(grid), color="k", lw=1, label="sigma'(u), derived")
ax_sigma.scatter(u, sig, s=4, alpha=0.4, label="recorded")
ax_sigma.set_xlabel("U")
ax_sigma.set_ylabel("sigma'(U)")
ax_sigma.legend(fontsize=7)
nonzero = np.abs(bp) > 1e-12
ax_delta.scatter(u[nonzero], np.abs(delta[nonzero]) / np.abs(bp[nonzero]), s=4, alpha=0.4)
ax_delta.plot(grid, sigma(grid), color="k", lw=1)
ax_delta.set_xlabel("U")
ax_delta.set_ylabel("|delta| / |bp|")
fig.tight_layout()
plt.show()

near = np.abs(u) < 0.1
print(f"{u.size} learning steps of recorded neurons; mean sigma' {sig.mean():.3f}")
share = np.abs(delta[near]).sum() / np.abs(delta).sum()
print(f"|U| < 0.1 (near threshold): {near.mean():.0%} of the steps carry {share:.0%} of the learning signal")
run.close()
