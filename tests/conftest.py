"""Shared pytest fixtures.

Real data lives in ``../shared/data`` beside the project root. Tests that need it use the
``shared_data`` fixture: it skips with a visible reason when the folder is absent, except under CI
(``CI=true``), where a missing folder is an error, never a skip. Likewise :func:`import_or_skip` for the
optional modules CI installs (bootstrap.sh installs the ``dask`` extra): under CI a failed import fails the test.
"""

import importlib
import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skip (locally) or fail (CI) when it is absent."""
    if not SHARED_DATA.is_dir():
        if _in_ci():
            pytest.fail(f"CI=true but the shared data folder {SHARED_DATA} is missing")
        pytest.skip(f"real data folder {SHARED_DATA} is absent (tests on real data need ../shared/data)")
    return SHARED_DATA


def import_or_skip(module: str, why: str):
    """Import ``module``; when that fails, skip (locally) or fail (CI: the module is part of the CI install)."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        if _in_ci():
            pytest.fail(f"CI=true but {module} does not import ({type(exc).__name__}: {exc}); {why}")
        pytest.skip(f"{module} does not import ({exc}); {why}")


#: Test files that compile networks, longest first (fresh-clone CI on 2 cores: the CUDA build ~320 s of nvcc;
#: then the files with the most C++ compiles: event-driven and equivalence 4 each, conv 2). ``--dist loadfile``
#: hands whole files to the workers in collection order; starting the longest first keeps one worker from
#: beginning a long file while the other has nothing left (longest-processing-time-first scheduling).
LONGEST_FIRST = ("test_cuda.py", "test_event_driven.py", "test_equivalence.py", "test_conv.py",
                 "test_conv_event.py", "test_batch.py", "test_precision.py", "test_event_batch.py", "test_nir.py",
                 "test_experiment.py",
                 "test_docs.py", "test_sweep.py", "test_recording.py", "test_plotting.py", "test_devices.py",
                 "test_learning.py", "test_api.py")


def pytest_collection_modifyitems(config, items):
    """Collect the files of :data:`LONGEST_FIRST` first, in that order; the order inside a file is kept."""
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable sort
