"""The static arrays of a standalone build written whole or not at all, and only when they changed.

Brian's ``write_static_arrays`` truncates and rewrites every file of the project's ``static_arrays/`` at every
build, same content or not, and the compiled binary reads those files at every start (synapse indices, the
input unpacking tables). A build killed half way through them left a torn file that every later run of the
folder read without a word, until the next build. Inside :func:`atomic_static_arrays` Brian writes them into a
staging folder instead; then an unchanged file is left as it is and a changed one replaces the old in one
rename, so a reader finds the old file or the new one, never a mix. Builds hold the build folder's lock
exclusively (:func:`~decolle_brian.backends.base.build_folder_lock`), so one staging folder per build folder
suffices; a killed build's is removed by the next build.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

#: Brian's folder of static arrays in a standalone project
STATIC_ARRAYS = "static_arrays"
#: where a build stages them (inside the build folder: same file system, so the rename is atomic)
STAGING = ".static_arrays.staging"


def publish(staged: Path, target: Path) -> None:
    """Move the files of ``staged`` into ``target``: a changed one by one rename, an unchanged one not at all."""
    for path in staged.iterdir():
        final = target / path.name
        if not (final.is_file() and filecmp.cmp(path, final, shallow=False)):
            os.replace(path, final)


@contextmanager
def atomic_static_arrays(device):
    """Inside the block, ``device.write_static_arrays`` (Brian's, called by ``device.build``) writes atomically."""
    original = device.write_static_arrays

    def write_static_arrays(directory):
        staging = Path(directory) / STAGING
        shutil.rmtree(staging, ignore_errors=True)  # a killed build's
        (staging / STATIC_ARRAYS).mkdir(parents=True)
        try:
            original(str(staging))  # Brian writes <directory>/static_arrays/<name>: here, into the staging folder
            publish(staging / STATIC_ARRAYS, Path(directory) / STATIC_ARRAYS)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    device.write_static_arrays = write_static_arrays
    try:
        yield
    finally:
        del device.write_static_arrays  # Brian's own method again
