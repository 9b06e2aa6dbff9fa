"""Prepare a temporary folder with Keras's test files, count them with real Keras, run them on lamina."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from tests.keras_suite import manifest, report, sdist

REPO = pathlib.Path(__file__).resolve().parents[2]
PREFIX = "kerastests/"  # the run folder's name for keras/src: no "keras" package name on any test's path

# Keras's own pytest settings (its pyproject.toml): warnings are errors but for these categories.
PYTEST_INI = """[pytest]
addopts = -p no:cacheprovider --import-mode=importlib --continue-on-collection-errors
filterwarnings =
    error
    ignore::DeprecationWarning
    ignore::ImportWarning
    ignore::RuntimeWarning
    ignore::PendingDeprecationWarning
    ignore::FutureWarning
    ignore::UserWarning
    ignore:Custom mask layers require a config
"""


def prepare(root: pathlib.Path, files: list[str]) -> pathlib.Path:
    """A temporary folder holding the chosen test files (copied from the sdist cache), a conftest and an ini."""
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="lamina-keras-suite-"))
    for rel in files:
        target = run_dir / PREFIX / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "keras" / "src" / rel, target)
    shutil.copyfile(pathlib.Path(__file__).with_name("suite_conftest.py"), run_dir / "conftest.py")
    (run_dir / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    return run_dir


def _boot(mode: str, run_dir: pathlib.Path, root: pathlib.Path, args: list[str], timeout: float,
          strict: bool = False) -> dict:
    results = run_dir / f"results-{mode}.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(run_dir)]),
               LAMINA_KERAS_SUITE_STRICT="1" if strict else "0")
    if mode == "oracle":
        env["KERAS_BACKEND"] = "torch"
    command = [sys.executable, "-m", "tests.keras_suite.boot", mode, str(results), str(root), "--",
               "-q", "-c", str(run_dir / "pytest.ini"), "--rootdir", str(run_dir), *args]
    done = subprocess.run(command, cwd=run_dir, env=env, capture_output=True, text=True, timeout=timeout)
    if not results.is_file():
        raise RuntimeError(f"the {mode} run wrote no results (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(results.read_text(encoding="utf-8"))


def static_count(path: pathlib.Path) -> int:
    """Test functions in a file (each parameterized one counted once): the count when Keras cannot collect it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sum(1 for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"))


def expected_counts(root: pathlib.Path, run_dir: pathlib.Path, files: list[str], timeout: float) -> dict[str, int]:
    """Tests per file as real Keras (torch backend) collects them, cached; a static count where it cannot."""
    key = hashlib.sha256(json.dumps([manifest.KERAS_VERSION, sorted(files)]).encode()).hexdigest()[:16]
    cache = sdist.cache_dir() / f"oracle-counts-{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))
    counts = dict.fromkeys(files, 0)
    if importlib.util.find_spec("keras") is not None:
        collected = _boot("oracle", run_dir, root, ["--collect-only", *(PREFIX + f for f in files)], timeout)
        for nodeid in collected["collected"]:
            name = report.file_of(nodeid, PREFIX)
            if name in counts:
                counts[name] += 1
    for name in files:
        if counts[name] == 0:
            counts[name] = static_count(root / "keras" / "src" / name)
    cache.write_text(json.dumps(counts, indent=1), encoding="utf-8")
    return counts


def run(scope: str = "issue", only: list[str] | None = None, keep: bool = False, timeout: float = 1800,
        pytest_args: list[str] | None = None, strict: bool = False) -> dict:
    """Fetch (once), prepare, count, run; the summary dict (see ``report.summarize``) plus timings."""
    started = time.monotonic()
    root = sdist.fetch()
    modules = manifest.select(scope, sdist.test_files(root), only)
    files = [f for fs in modules.values() for f in fs]
    skipped_files = {f: reason for f, (packages, reason) in manifest.REQUIRES.items()
                     if f in files and any(importlib.util.find_spec(p) is None for p in packages.split(","))}
    run_dir = prepare(root, files)
    try:
        expected = expected_counts(root, run_dir, files, timeout)
        counted = time.monotonic()
        targets = [PREFIX + f for f in files if f not in skipped_files]
        results = _boot("lamina", run_dir, root, [*targets, *(pytest_args or [])], timeout, strict)
        summary = report.summarize(modules, results, expected, PREFIX, skipped_files)
        summary["seconds"] = {"total": round(time.monotonic() - started, 1),
                              "lamina_run": round(time.monotonic() - counted, 1)}
        summary["keras_version"], summary["scope"], summary["strict_imports"] = manifest.KERAS_VERSION, scope, strict
        summary["expected_counts"] = expected
    finally:
        if keep:
            print(f"run folder kept: {run_dir}", file=sys.stderr)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    return summary
