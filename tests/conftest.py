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
