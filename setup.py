"""Packaging for decolle-brian.

The model equations live in the top-level ``equations/`` folder (they ARE the model, so they sit beside
the code, not inside it) and are shipped as the sub-package ``decolle_brian.equations`` through a
``package_dir`` mapping, so a plain non-editable ``pip install .`` finds them. The shipped run configurations
``runs/*.toml`` travel the same way as ``decolle_brian.runs``: they are the one statement of the published
networks (``decolle_brian.presets`` reads them).
"""

import re
from pathlib import Path

from setuptools import find_packages, setup


def _version() -> str:
    """The one version, from decolle_brian/_version.py, read as text (importing the package needs its dependencies)."""
    text = (Path(__file__).parent / "decolle_brian" / "_version.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"$', text, re.M).group(1)


setup(
    name="decolle-brian",
    version=_version(),
    description="DECOLLE (Deep Continuous Local Learning) as Brian2 equations with derived plasticity",
    python_requires=">=3.12",
    packages=find_packages(include=["decolle_brian", "decolle_brian.*"]) + ["decolle_brian.equations",
                                                                            "decolle_brian.runs"],
    package_dir={"decolle_brian.equations": "equations", "decolle_brian.runs": "runs"},
    package_data={"decolle_brian.equations": ["*.eq", "README.md"], "decolle_brian.backends": ["templates/*.cpp"],
                  "decolle_brian.runs": ["*.toml"]},
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
        # the typed configuration tree: strict validation with error locations (the dotted key), bounds and
        # descriptions on each key, and a JSON schema for editors from the same declarations; attrs/cattrs
        # would need hand-written bounds checks and a schema generator of our own
        "pydantic>=2.7",
        # `decolle-brian export --format nir`: the Neuromorphic Intermediate Representation's own classes, writer
        # and validation (pure Python; needs only numpy and h5py, both required above)
        "nir>=1.0,<1.1",
    ],
    extras_require={
        "cuda": ["brian2cuda==1.0b1", "nvidia-curand"],  # nvidia-curand 10.x = CUDA 13 build
        "dask": ["dask[distributed]"],
        # xdist: the suite on every core; import-linter: the layer contracts of pyproject.toml, run by .ci/run;
        # jsonschema: the exported configuration schema is checked as a JSON Schema
        "test": ["pytest", "pytest-xdist", "ruff", "import-linter", "jsonschema"],
        # the documentation site (docs/, built by .ci/run): Sphinx; MyST reads the existing Markdown pages as
        # they are; sphinx-gallery runs the tutorial and the analysis studies during the build; furo is the
        # theme. Pinned: the build runs with warnings as errors, so a new release must not break CI unseen
        "docs": ["sphinx==9.1.1", "myst-parser==5.2.0", "sphinx-gallery==0.22.1", "furo==2025.12.19"],
    },
    entry_points={"console_scripts": ["decolle-brian=decolle_brian.cli:main"]},
)
