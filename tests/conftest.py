"""Shared test fixtures: the Keras oracle and deterministic seeding."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

# Keras's own test files run through scripts/keras_suite.py (network, ~1 min), never in lamina's suite.
collect_ignore = ["keras_suite"]


@pytest.fixture(scope="session")
def keras():
    """Real Keras 3 on the torch backend, the oracle; tests using it skip where it is absent."""
    if os.environ.get("KERAS_BACKEND") != "torch":
        pytest.skip("oracle tests need KERAS_BACKEND=torch")
    keras = pytest.importorskip("keras")
    return keras


@pytest.fixture(scope="session")
def kl(keras):
    """Real Keras's layers where its text layers can run: they need TensorFlow (tests skip without it)."""
    pytest.importorskip("tensorflow")
    return keras.layers


@pytest.fixture(autouse=True)
def _seed():
    import lamina

    lamina.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield
