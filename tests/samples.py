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
