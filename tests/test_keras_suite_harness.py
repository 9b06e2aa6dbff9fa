"""The Keras-suite harness's own parts, offline: the alias finder, the TestCase stand-in, the report."""

import os
import pathlib
import subprocess
import sys
import tarfile
import types
import unittest

import numpy as np
import pytest

import lamina
from tests.keras_suite import aliasing, manifest, report, sdist

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, expected", [
    ("keras", ("lamina", True)),
    ("keras.src", ("lamina", True)),
    ("keras.src.layers.core.dense", ("lamina.layers.dense", True)),
    ("keras.src.layers.activations.relu", ("lamina.layers.relu", True)),
    ("keras.src.losses.loss", ("lamina.losses", True)),
    ("keras.layers", ("lamina.layers", True)),
    ("keras.src.backend.common.keras_tensor", ("lamina.layers.keras_tensor", True)),
    ("keras.src.metrics.no_such_metrics", ("lamina.metrics", False)),  # a missing file: its package's names
    ("keras.src.no_such_package.module", None),  # a missing package: nothing, so the import fails
    ("kerasx.layers", None),
])
def test_resolve_maps_keras_modules_to_lamina(name, expected):
    assert aliasing.resolve(name) == expected


def test_alias_module_reads_lamina_and_harness_names():
    spec = aliasing.KerasAliasFinder().find_spec("keras.src.layers.core.dense")
    module = spec.loader.create_module(spec)
    assert module.Dense is lamina.layers.Dense
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchLayer'"):
        module.NoSuchLayer  # noqa: B018
    backend = aliasing.AliasModule("keras.src.backend", "lamina.backend", aliasing.HARNESS_NAMES["backend"])
    assert backend.SUPPORTS_SPARSE_TENSORS is False and backend.floatx is lamina.backend.floatx


def test_alias_module_forwards_settings_to_lamina_and_mock_patch_restores_them():
    """``saving_lib._MEMORY_UPPER_BOUND = 0`` or ``mock.patch.object(saving_lib, ...)`` in a Keras test must
    change the setting where lamina reads it, and put it back after."""
    from unittest import mock

    from lamina.saving import saving_lib

    alias = aliasing.AliasModule("keras.src.saving.saving_lib", "lamina.saving.saving_lib")
    original = saving_lib._MEMORY_UPPER_BOUND
    with mock.patch.object(alias, "_MEMORY_UPPER_BOUND", 0):
        assert saving_lib._MEMORY_UPPER_BOUND == 0
    assert saving_lib._MEMORY_UPPER_BOUND == original
    alias._MEMORY_UPPER_BOUND = 0.25
    try:
        assert saving_lib._MEMORY_UPPER_BOUND == 0.25 and "_MEMORY_UPPER_BOUND" not in vars(alias)
    finally:
        alias._MEMORY_UPPER_BOUND = original
    alias.harness_only = 1  # a name lamina lacks stays on the alias
    assert alias.harness_only == 1 and not hasattr(saving_lib, "harness_only")


def test_install_refuses_when_real_keras_is_loaded(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", types.ModuleType("keras"))
    with pytest.raises(RuntimeError, match="real Keras is already imported"):
        aliasing.install()


def test_imports_resolve_to_lamina_in_a_fresh_process():
    # A fresh interpreter: this one may have imported real Keras (the oracle), which install() refuses.
    code = (
        "from tests.keras_suite import aliasing; aliasing.install()\n"
        "import keras, lamina\n"
        "from keras.src import layers, testing, backend\n"
        "from keras.src.layers.core import dense\n"
        "from keras.src.models import Sequential\n"
        "assert layers.Dense is lamina.layers.Dense is dense.Dense is keras.layers.Dense\n"
        "assert Sequential is lamina.Sequential and backend.Variable is lamina.Variable\n"
        "assert testing.TestCase.__module__ == 'tests.keras_suite.testing_stub'\n"
        "assert backend.SUPPORTS_SPARSE_TENSORS is False and isinstance(backend.backend(), str)\n"
        # while test modules import: a missing name is a placeholder that fails where it is used
        "from keras.src.layers import NoSuchLayer\n"
        "try:\n    NoSuchLayer(3)\nexcept AttributeError as e:\n    print('use:', e)\n"
        "import keras.src.no_such_package as missing\n"
        "aliasing.end_collection()\n"
        "try:\n    missing.Thing\nexcept AttributeError as e:\n    print('read:', e)\n"
        "try:\n    from keras.src.layers import NoSuchLayer2\nexcept ImportError as e:\n    print('import:', e)\n"
        "import sys; assert not any('site-packages' in str(getattr(m, '__file__', '') or '')\n"
        "    for n, m in sys.modules.items() if n.split('.')[0] == 'keras')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "use: module 'keras.src.layers' (lamina) has no attribute 'NoSuchLayer'" in done.stdout
    assert "read: lamina has no module for 'keras.src.no_such_package' (a test read 'Thing' from it)" in done.stdout
    assert "import: cannot import name 'NoSuchLayer2' from 'keras.src.layers'" in done.stdout


def test_strict_finder_refuses_missing_modules():
    with pytest.raises(ModuleNotFoundError, match="lamina has no module for 'keras.src.no_such_package'"):
        aliasing.KerasAliasFinder(strict=True).find_spec("keras.src.no_such_package")


def _case():
    from tests.keras_suite.testing_stub import TestCase  # lazy: absl comes with Keras, not with lamina

    class Case(TestCase):
        def runTest(self):
            pass

    return Case()


def test_stand_in_asserts():
    pytest.importorskip("absl")
    case = _case()
    case.assertAllClose([1.0, 2.0], np.array([1.0, 2.0 + 1e-7]))
    with pytest.raises(AssertionError):
        case.assertAllClose([1.0, 2.0], [1.0, 2.1])
    with pytest.raises(AssertionError):
        case.assertAllClose(np.zeros((2, 1)), np.zeros((2, 2)))  # shapes differ
    case.assertAllClose(lamina.Variable(np.ones(3)), np.ones(3))
    case.assertAllEqual([1, 2], np.array([1, 2]))
    with pytest.raises(AssertionError):
        case.assertAllEqual([1, 2], [1, 3])
    case.assertLen([1, 2, 3], 3)
    with pytest.raises(AssertionError):
        case.assertLen([1, 2, 3], 2)
    case.assertDType(np.zeros(2, "float32"), "float32")
    case.assertDType(3, "int32")
    with pytest.raises(AssertionError, match="Received: x.dtype=float64 and dtype=float32"):
        case.assertDType(np.zeros(2), "float32")
    with pytest.raises(AssertionError, match="are close"):
        case.assertNotAllClose([1.0], [1.0])


def test_stand_in_runs_numpy_cannot_train_tests_and_keeps_other_skips():
    pytest.importorskip("absl")
    case = _case()
    case.skipTest("Trainer not implemented from NumPy backend.")  # returns: lamina trains
    with pytest.raises(unittest.SkipTest):
        case.skipTest("Requires TF")


def test_report_groups_causes_and_skips():
    assert report.cause("AttributeError: module 'keras.src.ops' (lamina: lamina.ops) has no attribute 'std'") \
        == "missing: keras.src.ops.std"
    assert report.cause("ImportError: cannot import name 'FBetaScore' from 'keras.src.metrics' (unknown location)") \
        == "missing: keras.src.metrics.FBetaScore"
    assert report.cause("TypeError: Dense.__init__() got an unexpected keyword argument 'lora_rank'") \
        == "unexpected keyword: Dense.__init__(lora_rank=)"
    assert report.cause("ValueError: expected 3 got 4") == "ValueError: expected N got N"
    assert report.skip_category("Requires JAX backend for distribution") == "JAX-specific"
    assert report.skip_category("Backend does not support sparse tensors.") == "sparse/ragged tensors"
    assert report.skip_category("flaky") == "OTHER (not an allowed skip category)"
    assert report.rate({"passed": 3, "failed": 1, "error": 0, "skipped": 10}) == 0.75

    modules = {"m": ["a_test.py", "b_test.py"]}
    run = {"tests": {"kt/a_test.py::T::test_1": {"outcome": "passed", "reason": ""},
                     "kt/a_test.py::T::test_2": {"outcome": "skipped", "reason": "Requires TF"}},
           "collect_errors": {"kt/b_test.py": "ModuleNotFoundError: lamina has no module for 'keras.src.export'"}}
    summary = report.summarize(modules, run, {"b_test.py": 4}, "kt/", {})
    assert summary["files"]["b_test.py"] == {"passed": 0, "failed": 0, "error": 4, "skipped": 0}
    assert summary["total"] == {"passed": 1, "failed": 0, "error": 4, "skipped": 1}
    assert summary["causes"] == [("collection: missing module: keras.src.export", 4)]


def test_manifest_select_and_sdist_cache(tmp_path):
    files = ["metrics/a_test.py", "metrics/b_test.py", "optimizers/adam_test.py", "quantizers/q_test.py"]
    assert manifest.select("issue", files, ["/adam_test"]) == {"optimizers": ["optimizers/adam_test.py"]}
    assert manifest.select("dirs", files, ["metrics"]) == {"metrics": ["metrics/a_test.py", "metrics/b_test.py"]}
    with pytest.raises(ValueError, match="Received: scope='all'"):
        manifest.select("all", files)

    # A cached archive is unpacked without the network, and only once.
    source = tmp_path / "keras-0.0" / "keras" / "src" / "layers"
    source.mkdir(parents=True)
    (source / "x_test.py").write_text("def test_x():\n    pass\n")
    (tmp_path / "cache").mkdir()
    with tarfile.open(tmp_path / "cache" / "keras-0.0.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "keras-0.0", arcname="keras-0.0")
    root = sdist.fetch("0.0", tmp_path / "cache")
    assert sdist.test_files(root) == ["layers/x_test.py"]
    assert sdist.fetch("0.0", tmp_path / "cache") == root
