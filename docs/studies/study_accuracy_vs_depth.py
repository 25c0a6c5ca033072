"""
Accuracy and cost against depth
===============================

``analysis/accuracy_vs_depth.py``: every DECOLLE layer has its own readout, so one run gives an accuracy per
depth. Here one small three-layer network learns 40 digits for two epochs; the study draws the final test
accuracy of each layer's readout, the accuracy of every layer over the epochs and the synaptic operations
per inference of each layer. The command on real runs::

    python analysis/accuracy_vs_depth.py RUN_DIR [RUN_DIR ...] --out FIGURES
"""

import tempfile
from pathlib import Path

from gallery_runs import show, study, tiny_run  # docs/_ext/gallery_runs.py

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
