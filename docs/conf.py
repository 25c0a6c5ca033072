"""Sphinx configuration of the decolle-brian documentation site.

Build it with ``.venv/bin/python -m sphinx -W -b html docs docs/_build/html`` (``.ci/run`` does, after the
tests); ``pip install -e '.[docs]'`` installs what it needs. The build works offline. It generates, from the
code itself: the configuration reference (the pydantic schema), the CLI reference (the argparse parser), the
model's equation files, the derived plasticity rules (sympy, at build time) and the API reference
(autosummary); it runs the tutorial and the gallery of studies (sphinx-gallery) on the embedded digits data.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

from decolle_brian._version import __version__  # noqa: E402 - the one version (setup.py reads the same file)

project = "decolle-brian"
author = "decolle-brian contributors"
copyright = "2026, decolle-brian contributors (GPL-3.0-or-later)"  # noqa: A001 - Sphinx's name
version = release = __version__

extensions = [
    "myst_parser",  # the Markdown pages (docs/*.md, README and equations/README parts) as they are
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # the numpydoc docstrings of the package
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",  # the executed tutorial and the gallery of analysis studies
    "decolle_docs",  # docs/_ext: the pages generated from the code (configuration, CLI, equations, rules)
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "**/GALLERY_HEADER.rst"]  # _generated: included by pages

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # links such as cuda.md#measured-on-an-h200
suppress_warnings = []  # -W: every warning fails the build; nothing is silenced

autosummary_generate = True
autosummary_imported_members = False
# members defined in each module only (not the names a package re-exports through __all__): one entry per object
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = False  # parameter types as text: numpydoc types such as "shape (T, n_in)" are not object names
napoleon_use_ivar = True  # "Attributes" as fields of the class: dataclass fields are documented once, by autodoc

# the tutorial and the studies compile nothing: the runtime device with the numpy target (no C compiler),
# a build folder of their own, and no figure windows
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("DECOLLE_BUILD_DIR", str(DOCS / "_build" / "brian"))

sphinx_gallery_conf = {
    "examples_dirs": ["tutorials", "studies"],
    "gallery_dirs": ["auto_tutorials", "auto_studies"],
    "filename_pattern": r"/(tutorial|study)_",  # every script is executed during the build
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "image_scrapers": ("matplotlib",),
    "plot_gallery": "True",
    "show_memory": False,
    "min_reported_time": 0,
    "reset_modules": ("matplotlib",),
}

html_theme = "furo"
html_title = f"decolle-brian {version}"
html_static_path = []
nitpicky = False
