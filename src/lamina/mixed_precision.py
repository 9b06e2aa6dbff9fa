"""``keras.mixed_precision``: the older spellings of the dtype-policy functions, as Keras keeps them.

``set_global_policy("mixed_float16")`` is ``keras.config.set_dtype_policy("mixed_float16")``: layers
made afterwards compute in float16 and keep float32 variables. Keras's ``LossScaleOptimizer`` (which
keeps small float16 gradients from flushing to zero) is not provided by lamina.
"""

from __future__ import annotations

from lamina.dtype_policies.dtype_policy import DTypePolicy, dtype_policy, set_dtype_policy

Policy = DTypePolicy  # Keras 2's name
global_policy = dtype_policy
set_global_policy = set_dtype_policy

__all__ = ["DTypePolicy", "Policy", "dtype_policy", "global_policy", "set_dtype_policy", "set_global_policy"]
