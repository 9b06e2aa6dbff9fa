"""The repository tracks sources, not build products: no package archives and no large files in git."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 256 * 1024
ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".egg")


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    """The paths git tracks (``git ls-files``), relative to the repository root."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed, so the tracked files cannot be listed")
    proc = subprocess.run([git, "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C"})  # git's messages in English, to recognise one
    if proc.returncode != 0 and "not a git repository" in proc.stderr:
        pytest.skip(f"{ROOT} is not a git checkout (an unpacked source archive?)")
    assert proc.returncode == 0, f"git ls-files failed in {ROOT}: {proc.stderr.strip()}"
    return [p for p in proc.stdout.split("\0") if p]


def test_no_package_archive_is_tracked(tracked):
    archives = [p for p in tracked if p.lower().endswith(ARCHIVE_SUFFIXES)]
    assert not archives, f"package archives are tracked by git; remove them (git rm): {archives}"


def test_no_tracked_file_is_larger_than_256_kb(tracked):
    # A tracked file deleted in the working tree (not yet committed) has no size to check.
    sizes = {p: os.path.getsize(ROOT / p) for p in tracked if (ROOT / p).is_file()}
    large = {p: n for p, n in sizes.items() if n > MAX_BYTES}
    assert not large, f"files over {MAX_BYTES} bytes are tracked by git (sizes in bytes): {large}"
