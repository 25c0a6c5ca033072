"""Packaging for decolle-brian.

The model equations live in the top-level ``equations/`` folder (they ARE the model, so they sit beside
the code, not inside it) and are shipped as the sub-package ``decolle_brian.equations`` through a
``package_dir`` mapping, so a plain non-editable ``pip install .`` finds them.
"""

from setuptools import find_packages, setup

setup(
    name="decolle-brian",
    version="0.1.0",
    description="DECOLLE (Deep Continuous Local Learning) as Brian2 equations with derived plasticity",
    python_requires=">=3.12",
    packages=find_packages(include=["decolle_brian", "decolle_brian.*"]) + ["decolle_brian.equations"],
    package_dir={"decolle_brian.equations": "equations"},
    package_data={"decolle_brian.equations": ["*.eq", "README.md"], "decolle_brian.backends": ["templates/*.cpp"]},
    install_requires=[
        "brian2==2.10.1",  # the version brian2cuda 1.0b1 pins: one Brian for CPU and GPU
        "numpy",
        "scipy",
        "sympy",
        "tonic",
        "scikit-learn",  # the embedded default data set (load_digits); tonic already pulls it in
        "matplotlib",
        "h5py",
        "tqdm",
        "tomli-w",  # writes the resolved run configuration back as TOML (tomllib only reads)
    ],
    extras_require={
        "cuda": ["brian2cuda==1.0b1", "nvidia-curand"],  # nvidia-curand 10.x = CUDA 13 build
        "dask": ["dask[distributed]"],
        "test": ["pytest", "pytest-xdist", "ruff"],  # xdist: the suite on every core
    },
    entry_points={"console_scripts": ["decolle-brian=decolle_brian.cli:main"]},
)
