"""Sample plots: frames and raster saved as non-blank PNGs."""

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from decolle_brian.data import Sample, load_dataset
from decolle_brian.data.plot import plot_sample

plt.switch_backend("Agg")  # no display needed


def non_blank(path) -> bool:
    img = mpimg.imread(path)[..., :3]
    return img.std() > 0.01 and (img < 0.5).mean() > 0.001


def event_sample(seed=0):
    rng = np.random.default_rng(seed)
    counts = (rng.random((60, 2, 16, 16)) < 0.02).astype(np.float32)
    counts[10:20, 1, 4:8, 4:8] = 2
    return Sample(counts, 3)


@pytest.mark.parametrize("kind", ["frames", "raster"])
def test_plot_two_channel_sample(tmp_path, kind):
    fig = plot_sample(event_sample(), kind=kind, n_frames=4)
    ax = fig.axes[0]
    assert "ms" in ax.get_xlabel() and ax.get_ylabel()
    assert ax.get_title() == "label 3"
    out = tmp_path / f"{kind}.png"
    fig.savefig(out)
    plt.close(fig)
    assert non_blank(out)


def test_plot_one_channel_into_given_axes(tmp_path):
    ds = load_dataset("digits", "test", max_samples=10)
    fig, axes = plt.subplots(2, 1)
    assert plot_sample(ds[0], ax=axes[0], class_names=ds.class_names) is fig
    assert plot_sample(ds[0].counts, ax=axes[1], kind="raster", title="raw counts") is fig
    assert axes[1].get_xlabel() == "time (ms)" and "neuron" in axes[1].get_ylabel()
    fig.savefig(tmp_path / "digits.png")
    plt.close(fig)
    assert non_blank(tmp_path / "digits.png")
    with pytest.raises(ValueError, match="invalid kind"):
        plot_sample(ds[0], kind="movie")


@pytest.mark.data
def test_plot_real_nmnist_sample(shared_data, tmp_path):
    ds = load_dataset("nmnist", "test", root=shared_data, max_samples=10, cache=False)
    fig = plot_sample(ds[0], kind="frames")
    fig.savefig(tmp_path / "nmnist.png")
    plt.close(fig)
    assert non_blank(tmp_path / "nmnist.png")
