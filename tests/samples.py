"""Helpers for tests: in-memory samples, the stop-then-resume check, and what a learned parameter changed."""


class ListSamples:
    """A list of (counts, label) with the data set methods the training loop calls."""

    def __init__(self, counts, labels):
        self.items = [(c, int(label)) for c, label in zip(counts, labels, strict=True)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    def set_epoch(self, epoch):
        pass


def assert_stop_then_resume_is_exact(loop, stop_after: int, samples_seen: int, initial_w, key: str = "layer1.W"):
    """Run ``loop()`` whole; run another stopped after ``stop_after`` samples and resume it (its state, generator
    and parameters): the resumed run's parameters equal the whole run's bit for bit, and ``key`` (``initial_w``
    at the start) learned.

    ``loop(state=None, generator=None, params=None)`` makes a fresh TrainingLoop (the defaults: a new run)."""
    import numpy as np  # noqa: PLC0415
    import pytest  # noqa: PLC0415

    from decolle_brian.loop import Interrupted  # noqa: PLC0415

    whole = loop()
    whole.run()
    stopped = loop()
    with pytest.raises(Interrupted):
        stopped.run(stop_after_samples=stop_after)
    assert (stopped.state.epoch, stopped.state.position) == (0, stop_after)
    resumed = loop(stopped.state, stopped.rng, stopped.params)
    resumed.run()
    assert resumed.state.samples_seen == whole.state.samples_seen == samples_seen
    for key, value in whole.params.items():
        np.testing.assert_array_equal(resumed.params[key], value, err_msg=key)
    assert not np.array_equal(whole.params[key], initial_w)


def assert_change_close(new, expected, initial, err_msg: str, rtol: float = 1e-9):
    """What a parameter learned (``new - initial``) equals the reference's (``expected - initial``) within ``rtol``
    of the largest change: a parameter compared on its value at 1e-6 relative would hide an error of 1 % of a
    change 1e-4 of the value."""
    import numpy as np  # noqa: PLC0415

    change = np.asarray(expected) - initial
    np.testing.assert_allclose(np.asarray(new) - initial, change, rtol=0, atol=rtol * np.abs(change).max(),
                               err_msg=f"{err_msg}: change")


def assert_batched_loop_is_oracle(sim, params, counts, labels, order, layers, *, burnin: int) -> None:
    """The training loop of a batched network against the batched NumPy oracle (``layers``: the oracle's layers
    made from ``params``, trained in place).

    Learning over ``order`` (``2 B + 1`` samples): each batch of B samples in order is one
    :func:`~decolle_brian.reference_batch.run_batch` (masks drawn per sample from the run's generator), the last
    partial batch is left out; every learned parameter and its Adamax state equal the oracle's within 1e-6.
    Evaluation in batches (the last one filled up) votes as the online oracle.
    """
    import numpy as np  # noqa: PLC0415

    from decolle_brian import reference as ref  # noqa: PLC0415
    from decolle_brian.reference_batch import run_batch  # noqa: PLC0415
    from decolle_brian.training import evaluate_dataset, iter_chunks  # noqa: PLC0415 - tqdm only here

    spec, batch = sim.spec, sim.spec.batch_size
    n_classes, steps_per_sample = spec.n_classes, counts.shape[1]
    assert len(order) == 2 * batch + 1
    dataset = [(counts[i], int(labels[i])) for i in range(len(counts))]
    steps = list(iter_chunks(sim, dataset, order, params, learn=True, lr=spec.learning.lr,
                             rng=np.random.default_rng(9)))
    assert [done for done, _, _ in steps] == [batch, 2 * batch]  # the last sample waits for the next epoch
    mask_rng, state = np.random.default_rng(9), [{} for _ in spec.layers]
    for start in (0, batch):
        chosen = order[start:start + batch]
        masks = [(mask_rng.random((steps_per_sample, batch, n)) >= 0.5) / 0.5 for n in spec.layer_sizes()[1:]]
        run_batch(layers, counts[chosen], labels[chosen], n_classes=n_classes, burnin=burnin, learn=True,
                  slope=10.0, optimizer="adamax", lr=spec.learning.lr, opt_state=state, masks=masks)
    trained = steps[-1][1]
    for k, (layer, ref_layer) in enumerate(zip(spec.layers, layers, strict=True), start=1):
        key = "K" if layer.kind == "conv" else "W"
        assert not np.allclose(trained[f"layer{k}.{key}"], params[f"layer{k}.{key}"])
        np.testing.assert_allclose(trained[f"layer{k}.{key}"], getattr(ref_layer, key), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(trained[f"layer{k}.v_{key}"], state[k - 1][key], rtol=1e-6, atol=1e-12)
    assert [r.label for _, _, chunk in steps for r in chunk] == list(labels[order[:2 * batch]])

    evaluation = evaluate_dataset(sim, dataset, trained)  # batches of B, B and 1 + (B - 1) empty
    online = ref.evaluate(layers, list(counts), labels, n_classes=n_classes, burnin=burnin, slope=10.0)
    np.testing.assert_allclose(evaluation.accuracy, online)
