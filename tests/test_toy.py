"""Tests of the temporal-order toy task: rates carry no class information, temporal order does."""

import numpy as np
import pytest

from decolle_brian.toy import class_orders, make_toy_task

N_GROUPS = 4


@pytest.fixture(scope="module")
def task():
    return make_toy_task(n_train=400, n_test=80, n_classes=4, n_channels=40, n_steps=100, seed=0)


def test_shapes_types_and_balance(task):
    xtr, ytr, xte, yte = task
    assert xtr.shape == (400, 100, 40) and xte.shape == (80, 100, 40)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert np.all(xtr >= 0) and np.all(xtr == np.round(xtr)) and xtr.max() > 1  # counts, some above 1
    np.testing.assert_array_equal(np.bincount(ytr), [100] * 4)
    np.testing.assert_array_equal(np.bincount(yte), [20] * 4)


def test_rates_do_not_separate_classes(task):
    xtr, ytr, _, _ = task
    totals = xtr.sum(axis=1)  # (n, channels): total events per channel
    # Expected per channel: burst_len * burst_rate + n_steps * noise_rate = 15 * .3 + 100 * .02 = 6.5.
    np.testing.assert_allclose(totals.mean(), 6.5, rtol=0.03)
    overall = totals.mean(axis=0)
    for c in range(4):
        tc = totals[ytr == c]
        se = tc.std(axis=0, ddof=1) / np.sqrt(len(tc))
        z = (tc.mean(axis=0) - overall) / se
        assert np.abs(z).max() < 4.5  # 40 channels x 4 classes: no systematic rate difference
    # A nearest-class-mean classifier on the count vectors stays near chance.
    means = np.stack([totals[:200][ytr[:200] == c].mean(0) for c in range(4)])
    pred = np.argmin(((totals[200:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert np.mean(pred == ytr[200:]) < 0.4


def test_temporal_order_differs_between_classes(task):
    xtr, ytr, _, _ = task
    groups = np.arange(40) * N_GROUPS // 40
    t = np.arange(100)
    orders = []
    for c in range(4):
        profile = xtr[ytr == c].mean(axis=0)  # (steps, channels)
        # Centre of mass in time of each group's activity -> the order in which the groups burst.
        com = [
            np.sum(t * profile[:, groups == g].sum(1)) / profile[:, groups == g].sum()
            for g in range(N_GROUPS)
        ]
        orders.append(tuple(np.argsort(com)))
        # Bursts are well separated: the centres are at least half a slot apart.
        assert np.min(np.diff(np.sort(com))) > 12
    assert len(set(orders)) == 4


def test_deterministic_per_seed():
    a = make_toy_task(n_train=20, n_test=10, seed=3)
    b = make_toy_task(n_train=20, n_test=10, seed=3)
    c = make_toy_task(n_train=20, n_test=10, seed=4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_class_orders_distinct_and_transitions_spread():
    orders = class_orders(4, 4, np.random.default_rng(0))
    assert len({tuple(o) for o in orders}) == 4
    for o in orders:
        assert sorted(o) == [0, 1, 2, 3]
    trans = [set(zip(o[:-1], o[1:], strict=True)) for o in orders]
    for i in range(4):
        for j in range(i + 1, 4):
            assert len(trans[i] & trans[j]) <= 1
    with pytest.raises(ValueError):
        class_orders(7, 3, np.random.default_rng(0))


def test_parameters_respected():
    xtr, ytr, xte, yte = make_toy_task(
        n_train=12, n_test=6, n_classes=3, n_channels=12, n_steps=60, seed=1, noise_rate=0.0, jitter=0
    )
    assert xtr.shape == (12, 60, 12) and set(ytr) == {0, 1, 2}
    # Without noise and jitter each group is active only inside its burst: 9 steps (0.6 of a 15-step slot).
    groups = np.arange(12) * 4 // 12
    for x in xtr:
        for g in range(4):
            active = np.flatnonzero(x[:, groups == g].sum(1))
            if active.size:
                assert active.max() - active.min() < 9
    with pytest.raises(ValueError):
        make_toy_task(n_channels=2)
