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

import tempfile
from pathlib import Path

from gallery_runs import show, study, tiny_run  # docs/_ext/gallery_runs.py

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
