"""A small spatiotemporal toy task whose classes differ in temporal ORDER, not in rate.

The input channels are split into ``n_groups`` equal groups. In every sample each group emits one burst
(Poisson events at ``burst_rate`` per step per channel for ``burst_len`` steps), and the groups burst one
after the other in a class-specific order (a permutation of the groups). On top: independent Poisson
background noise on every channel and step, and a random onset jitter per burst.

Why it needs temporal integration: every class has every group burst exactly once, with the same length
and rate, so each channel's expected event count is the same in every class (``burst_len * burst_rate +
n_steps * noise_rate``) and no rate code or snapshot of which channels are active now can tell the classes
apart (every group is active at some time in every class). The class is in which group fired BEFORE which:
a per-step readout must hold a memory of earlier bursts, which is what the slow traces ``P`` and ``Q``
(tau 33 ms and 12 ms) and the membrane provide. The class orders are chosen so that their sets of
consecutive group transitions overlap as little as possible, so a memory of about one burst is enough.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["make_toy_task", "class_orders"]


def class_orders(n_classes: int, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct burst orders, one per class, with few shared consecutive transitions.

    Greedy: start from a random permutation; then repeatedly add the permutation whose set of ordered
    transitions ``(group_k, group_k+1)`` shares the fewest with any chosen one (then fewest in total),
    candidates visited in a random order (so ties are broken by ``rng``).

    Parameters
    ----------
    n_classes, n_groups : int
        Needs ``n_classes <= n_groups!`` and ``n_groups <= 8`` (all permutations are enumerated).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of int, shape (n_classes, n_groups)
        Row ``c`` is the order in which the groups burst in class ``c``.
    """
    if n_groups > 8:
        raise ValueError("n_groups > 8 is not supported (all permutations are enumerated)")
    perms = [np.array(p) for p in itertools.permutations(range(n_groups))]
    if n_classes > len(perms):
        raise ValueError(f"{n_classes} classes need more than the {len(perms)} orders of {n_groups} groups")
    perms = [perms[i] for i in rng.permutation(len(perms))]
    trans = [set(zip(p[:-1].tolist(), p[1:].tolist(), strict=True)) for p in perms]
    chosen = [0]
    while len(chosen) < n_classes:
        best, best_key = None, None
        for i in range(len(perms)):
            if i in chosen:
                continue
            shared = [len(trans[i] & trans[j]) for j in chosen]
            key = (max(shared), sum(shared))
            if best_key is None or key < best_key:
                best, best_key = i, key
        chosen.append(best)
    return np.stack([perms[i] for i in chosen])


def _make_samples(
    labels: np.ndarray,
    orders: np.ndarray,
    groups: np.ndarray,
    n_steps: int,
    burst_len: int,
    burst_rate: float,
    noise_rate: float,
    jitter: int,
    rng: np.random.Generator,
) -> np.ndarray:
    n_groups = orders.shape[1]
    n_channels = groups.size
    slot = n_steps // n_groups
    base = (slot - burst_len) // 2
    counts = np.zeros((labels.size, n_steps, n_channels))
    for n, lab in enumerate(labels):
        rate = np.full((n_steps, n_channels), noise_rate)
        for k, grp in enumerate(orders[lab]):
            onset = k * slot + base + int(rng.integers(-jitter, jitter + 1))
            # Clip the onset, not the burst: every burst keeps its full length, so the expected count per
            # channel is the same in every class.
            onset = min(max(onset, 0), n_steps - burst_len)
            rate[onset : onset + burst_len, groups == grp] += burst_rate
        counts[n] = rng.poisson(rate)
    return counts.astype(np.float32)


def make_toy_task(
    n_train: int = 200,
    n_test: int = 100,
    n_classes: int = 4,
    n_channels: int = 40,
    n_steps: int = 100,
    seed: int = 0,
    noise_rate: float = 0.02,
    *,
    n_groups: int = 4,
    burst_rate: float = 0.3,
    burst_frac: float = 0.6,
    jitter: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and test sets of the temporal-order task (see the module docstring).

    Channels are assigned to groups in contiguous blocks (channel ``i`` in group ``i * n_groups //
    n_channels``). Time is divided into ``n_groups`` slots of ``n_steps // n_groups`` steps; the group at
    position ``k`` of the class order bursts for ``burst_len = round(burst_frac * slot)`` steps centred in
    slot ``k``, shifted by a uniform integer jitter in ``[-jitter, jitter]`` (clipped so that the burst
    stays inside the sample). Events are Poisson counts per step (may exceed 1) with rate ``burst_rate``
    inside a burst plus ``noise_rate`` everywhere. Labels are balanced (``i % n_classes``) and shuffled.

    Parameters
    ----------
    n_train, n_test : int
        Number of samples.
    n_classes : int
    n_channels : int
        Input channels (at least ``n_groups``).
    n_steps : int
        Time steps per sample (1 ms each).
    seed : int
        Everything (class orders, labels, events) is determined by it.
    noise_rate : float
        Background events per channel per step.
    n_groups : int
        Channel groups, one burst each per sample.
    burst_rate : float
        Extra events per channel per step inside a burst.
    burst_frac : float
        Burst length as a fraction of a slot.
    jitter : int
        Maximum onset jitter in steps.

    Returns
    -------
    train_counts : ndarray of float32, shape (n_train, n_steps, n_channels)
    train_labels : ndarray of int64, shape (n_train,)
    test_counts : ndarray of float32, shape (n_test, n_steps, n_channels)
    test_labels : ndarray of int64, shape (n_test,)
    """
    if n_channels < n_groups:
        raise ValueError("need at least one channel per group")
    slot = n_steps // n_groups
    burst_len = int(round(burst_frac * slot))
    if not 1 <= burst_len <= slot:
        raise ValueError(f"burst length {burst_len} does not fit a slot of {slot} steps")
    rng = np.random.default_rng(seed)
    orders = class_orders(n_classes, n_groups, rng)
    groups = np.arange(n_channels) * n_groups // n_channels
    out = []
    for n in (n_train, n_test):
        labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
        counts = _make_samples(
            labels, orders, groups, n_steps, burst_len, burst_rate, noise_rate, jitter, rng
        )
        out += [counts, labels]
    return tuple(out)
