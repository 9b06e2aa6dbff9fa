"""The subprocess that runs Keras's test files: ``python -m tests.keras_suite.boot MODE RESULTS SDIST -- ARGS``.

MODE "lamina" puts the alias finder first on ``sys.meta_path`` before anything imports ``keras``, then
runs pytest (``LAMINA_KERAS_SUITE_STRICT=1``: no placeholder modules, see ``aliasing``); MODE "oracle"
runs pytest with real Keras (used only to count each file's tests with ``--collect-only``).
Outcomes, collection errors and collected test ids go to the RESULTS JSON file.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest

TEST_TIMEOUT_S = 120  # one test; a fit that never ends (an ignored steps_per_epoch) must not stall the run


def _crash(report) -> str:
    """The one-line exception of a failed report: ``TypeError: ...``."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return " ".join((crash.message or "?").split())[:500]
    text = str(report.longrepr).strip().splitlines()
    errors = [line for line in text if line.startswith("E   ")]
    return (errors[-1][4:] if errors else (text[-1] if text else "?"))[:500]


def _skip_reason(report) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


class Recorder:
    """Collects each test's outcome (passed / failed / error / skipped) with its reason."""

    def __init__(self):
        self.tests: dict[str, dict] = {}
        self.collect_errors: dict[str, str] = {}
        self.collected: list[str] = []

    def pytest_collectreport(self, report):
        if report.failed:
            self.collect_errors[report.nodeid] = _crash(report)

    def pytest_collection_finish(self, session):
        self.collected = [item.nodeid for item in session.items]
        if "tests.keras_suite.aliasing" in sys.modules:
            sys.modules["tests.keras_suite.aliasing"].end_collection()  # missing names now raise where read

    def pytest_runtest_logreport(self, report):
        record = self.tests.setdefault(report.nodeid, {"outcome": "passed", "reason": ""})
        if record["outcome"] != "passed":
            return  # the first bad phase decides
        if report.skipped:
            reason = _skip_reason(report)
            if hasattr(report, "wasxfail"):
                reason = f"xfail: {report.wasxfail}"
            record.update(outcome="skipped", reason=reason)
        elif report.failed:
            record.update(outcome="failed" if report.when == "call" else "error", reason=_crash(report))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        def expire(signum, frame):
            raise TimeoutError(f"keras-suite: the test ran over {TEST_TIMEOUT_S} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.alarm(TEST_TIMEOUT_S)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)


def main(argv: list[str]) -> int:
    mode, results, sdist_root, sep, *pytest_args = argv
    if sep != "--" or mode not in ("lamina", "oracle"):
        raise SystemExit("usage: python -m tests.keras_suite.boot lamina|oracle RESULTS SDIST -- PYTEST_ARGS")
    if mode == "lamina":
        from tests.keras_suite import aliasing  # lazy: the finder goes in before anything can import keras

        aliasing.install(sdist_root, strict=os.environ.get("LAMINA_KERAS_SUITE_STRICT") == "1")
        import lamina  # lazy: imported once the finder is in place, as every lamina import here is

        # Keras's tests are Keras code we may not edit, and some build models lamina's lint refuses on
        # purpose (wrappers/sklearn_test.py's regressor ends in a softmax over one unit): the case
        # set_lint_mode exists for. The findings still show, as warnings; the models then train as in Keras.
        lamina.config.set_lint_mode("warn")
    recorder = Recorder()
    code = pytest.main(pytest_args, plugins=[recorder])
    if mode == "lamina":
        real = [m for m in sys.modules if m == "keras" or m.startswith("keras.")
                if not getattr(sys.modules[m], "__lamina_target__", None)
                and getattr(getattr(sys.modules[m], "__spec__", None), "origin", None)
                and "site-packages" in str(sys.modules[m].__spec__.origin)]
        if real:
            raise SystemExit(f"keras-suite: real Keras was imported during the lamina run: {real[:5]}")
    with open(results, "w", encoding="utf-8") as out:
        json.dump({"exit_code": int(code), "tests": recorder.tests, "collect_errors": recorder.collect_errors,
                   "collected": recorder.collected}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
