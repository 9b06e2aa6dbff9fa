"""Keras's source distribution, fetched once from the package index into a cache outside the repository."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tarfile

from tests.keras_suite.manifest import KERAS_VERSION


def cache_dir() -> pathlib.Path:
    """``$LAMINA_KERAS_SUITE_CACHE``, else ``$XDG_CACHE_HOME/lamina/keras-suite``, else ``~/.cache/...``."""
    explicit = os.environ.get("LAMINA_KERAS_SUITE_CACHE")
    if explicit:
        return pathlib.Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "lamina" / "keras-suite"


def download_command(dest: pathlib.Path, version: str = KERAS_VERSION) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            f"keras=={version}", "-d", str(dest)]


def fetch(version: str = KERAS_VERSION, cache: pathlib.Path | None = None) -> pathlib.Path:
    """The unpacked sdist folder (``.../keras-<version>``), downloading and unpacking it on first use."""
    cache = cache or cache_dir()
    root = cache / f"keras-{version}"
    if (root / "keras" / "src").is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"keras-{version}.tar.gz"
    if not archive.is_file():
        command = download_command(cache, version)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not archive.is_file():
            raise RuntimeError(
                f"Could not download Keras {version}'s source distribution into {cache}. Run this where the "
                f"package index can be reached, then retry:\n  {' '.join(command)}\n"
                f"pip said: {done.stderr.strip()[-800:]}")
    partial = cache / f".keras-{version}.partial"
    with tarfile.open(archive) as tar:
        tar.extractall(partial, filter="data")
    (partial / f"keras-{version}").rename(root)  # whole or not at all: a half-unpacked tree is never used
    partial.rmdir()
    return root


def test_files(root: pathlib.Path) -> list[str]:
    """Every ``*_test.py`` in the sdist, relative to ``keras/src``."""
    src = root / "keras" / "src"
    return sorted(str(p.relative_to(src)) for p in src.rglob("*_test.py"))
