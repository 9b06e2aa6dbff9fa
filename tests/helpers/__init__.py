"""Shared test helpers: gradient checks (:mod:`.gradcheck`) and the generic layer test (:mod:`.layer_harness`)."""

from tests.helpers.gradcheck import check_gradients
from tests.helpers.layer_harness import (
    check_layer_gradients,
    keras_forward_and_grads,
    lamina_forward_and_grads,
    random_inputs,
    run_layer_test,
)

__all__ = [
    "check_gradients",
    "check_layer_gradients",
    "keras_forward_and_grads",
    "lamina_forward_and_grads",
    "random_inputs",
    "run_layer_test",
]
