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

import tempfile
from pathlib import Path

from gallery_runs import show, study, tiny_run  # docs/_ext/gallery_runs.py

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
