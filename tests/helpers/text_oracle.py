"""Comparing lamina's text and lookup layers with real Keras's (torch backend, TensorFlow underneath)."""

import numpy as np


def numpy_of(x) -> np.ndarray:
    """A Keras output (a torch tensor, or already an array) as a NumPy array."""
    return np.asarray(x.detach().numpy() if hasattr(x, "detach") else x)


def same_as_keras(k_layer, l_layer, x, rtol: float = 1e-6) -> np.ndarray:
    """Both layers on ``x``: equal vocabularies, shapes and values; lamina's output returned."""
    k_out, l_out = numpy_of(k_layer(x)), l_layer(x)
    assert [str(t) for t in k_layer.get_vocabulary()] == [str(t) for t in l_layer.get_vocabulary()]
    assert l_out.shape == k_out.shape
    # Keras's eager lookups return int64 counts for one_hot/multi_hot/count; its compute_output_spec (and
    # lamina, eager and symbolic) says floatx: equal values, float32 arrays.
    mode = getattr(l_layer, "output_mode", None) or l_layer.get_config()["output_mode"]
    assert l_out.dtype == (k_out.dtype if mode == "int" else "float32")
    np.testing.assert_allclose(l_out, k_out, rtol=rtol)
    return l_out
