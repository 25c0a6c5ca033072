"""The tiny recorded run shared by test_recording.py and test_plotting.py (trained once per session).

Digits, 40 training samples of 30 steps, two small dense layers, SGD (so that the recorded weight change
must equal -eta x the product of the three recorded factors), recording of every variable.
"""

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
    """Train the tiny recorded run (once per test session) and return its run folder."""
    if "run" not in _cache:
        root = tmp_path_factory.mktemp("recorded")
        _cache["run"] = train(load_config(write_config(root)), root / "out")
    return _cache["run"]
