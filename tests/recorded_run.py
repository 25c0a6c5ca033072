"""The tiny recorded run shared by test_recording.py and test_plotting.py (trained once per session).

Digits, 40 training samples of 30 steps, two small dense layers, SGD (so that the recorded weight change
must equal -eta x the product of the three recorded factors), recording of every variable.

Once per session, not once per pytest-xdist worker: the run goes to a folder of the session's temporary root
(shared by its workers), trained by the first worker that asks under an exclusive file lock; the others wait
for it and read the same run. Only the tests' reads and the plot command's figures touch it afterwards.
"""

import fcntl
import json
import os
import shutil
from pathlib import Path

from decolle_brian.config import load_config
from decolle_brian.experiment import train

TINY_RECORDED = """
name = "tinyrec"
seed = 5
[data]
dataset = "digits"
train_samples = 40
test_samples = 20
[data.params]
n_steps = 30
[network]
layers = [16, 12]
[learning]
optimizer = "sgd"
lr = 0.1
burnin = 5
dropout = 0.5
[training]
epochs = 2
chunk_samples = 4
checkpoint_every = 8
progress = false
[device]
name = "cpp_standalone"
[recording]
variables = ["all"]
neurons = 6
synapses = 3
train_every = 10
weights_every = 16
"""

_cache: dict[str, Path] = {}


def write_config(folder: Path, text: str = TINY_RECORDED) -> Path:
    path = Path(folder) / "tinyrec.toml"
    path.write_text(text)
    return path


def recorded_run(tmp_path_factory) -> Path:
    """Train the tiny recorded run (once per test session, whatever the number of workers); its run folder."""
    if "run" not in _cache:
        base = tmp_path_factory.getbasetemp()
        # an xdist worker's temporary root is <session root>/popen-gwN: the session root is common to the workers
        shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
        root = shared / "recorded-run"
        with open(shared / "recorded-run.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if training fails
            done = root / "done.json"
            if done.is_file():
                run = Path(json.loads(done.read_text())["run_dir"])
            else:  # first here (or an earlier attempt failed): train from scratch
                shutil.rmtree(root, ignore_errors=True)
                root.mkdir(parents=True)
                run = train(load_config(write_config(root)), root / "out")
                done.write_text(json.dumps({"run_dir": str(run)}))
        _cache["run"] = run
    return _cache["run"]
