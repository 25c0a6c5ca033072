"""Learning from chance: a 2-hidden-layer network learns the spatiotemporal toy task online.

The toy classes differ only in the temporal order of input bursts (see decolle_brian.toy), so this checks
that the compiled network with the derived rule actually learns a temporal task, not only that it agrees
with the reference.
"""

import numpy as np
import pytest

from decolle_brian.devices import Simulator
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec
from decolle_brian.toy import make_toy_task
from decolle_brian.training import evaluate_dataset, train_epoch

EPOCHS, LR, LR_DECAY, BURNIN = 8, 1.0, 0.7, 10


class ArrayDataset:
    def __init__(self, counts, labels):
        self.counts, self.labels_, self.n_steps = counts, labels, counts.shape[1]

    def __len__(self):
        return len(self.counts)

    def __getitem__(self, i):
        return self.counts[i], int(self.labels_[i])


def test_toy_task_is_learned_from_chance(tmp_path):
    train_x, train_y, test_x, test_y = make_toy_task(n_train=200, n_test=100, seed=0)
    train, test = ArrayDataset(train_x, train_y), ArrayDataset(test_x, test_y)
    spec = NetworkSpec(n_inputs=train_x.shape[2], layers=(DenseLayerSpec(100), DenseLayerSpec(100)), n_classes=4,
                       learning=LearningSpec(optimizer="sgd", lr=LR, dropout=0.5, burnin=BURNIN))
    sim = Simulator(spec, 20 * train.n_steps, device="cpp_standalone", build_dir=tmp_path / "build")
    rng = np.random.default_rng(0)
    params = init_params(spec, rng)

    before = evaluate_dataset(sim, test, params).accuracy
    assert max(before) <= 0.4, f"untrained network should be near chance (0.25), got {before}"
    for epoch in range(EPOCHS):
        params, _ = train_epoch(sim, train, rng.permutation(len(train)), params, lr=LR * LR_DECAY**epoch, rng=rng)
    after = evaluate_dataset(sim, test, params).accuracy
    assert after[-1] >= 0.9, f"deepest layer test accuracy {after[-1]:.2f} (before training {before[-1]:.2f})"


pytestmark = [pytest.mark.standalone, pytest.mark.slow]
