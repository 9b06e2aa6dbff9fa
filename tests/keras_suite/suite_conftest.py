"""Copied as ``conftest.py`` into the folder where Keras's test files run (the harness's, not Keras's).

Keras's repository has a conftest that its source distribution does not ship; its tests use three
things from it, given here: the ``requires_trainable_backend`` marker (Keras skips those tests on its
NumPy backend, which cannot train; lamina trains, so here the marker skips nothing), the
``multi_device`` marker (skipped: several accelerators) and ``skip_if_backend``.
"""

import pytest
from keras.src import backend  # lamina's, through the alias finder (real Keras only in the oracle count)


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_trainable_backend: Keras skips it where the backend cannot train")
    config.addinivalue_line("markers", "multi_device: needs several accelerator devices")


# Tests of Keras's own private dispatch to a GPU library, which has no counterpart in lamina (file, test name).
GPU_DISPATCH = {
    ("bidirectional_test.py", "test_fused_lstm_eligibility"),
    ("bidirectional_test.py", "test_fused_gru_eligibility"),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "multi_device" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="GPU: needs several accelerator devices (multi_device)"))
        elif (item.path.name, item.originalname) in GPU_DISPATCH:
            item.add_marker(pytest.mark.skip(
                reason="GPU: asks Keras's private `_can_attempt_fused_lstm/gru` whether the torch backend may use "
                       "its cuDNN kernel"))


def skip_if_backend(given_backend, reason):
    return pytest.mark.skipif(backend.backend() == given_backend, reason=reason)
