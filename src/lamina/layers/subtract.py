"""``Subtract``: the difference of exactly two tensors."""

from __future__ import annotations

from lamina import ops
from lamina.layers.base_merge import Merge


class Subtract(Merge):
    """``Subtract()([x1, x2])`` returns ``x1 - x2``; exactly two inputs."""

    def _check_list(self, input_shape) -> list:
        shapes = super()._check_list(input_shape)
        if len(shapes) != 2:
            raise ValueError(
                f"Subtract layer '{self.name}': this layer should be called on exactly 2 inputs. "
                f"Received: {len(shapes)} inputs, input_shape={shapes}"
            )
        return shapes

    def _merge_function(self, inputs):
        return ops.subtract(inputs[0], inputs[1])


def subtract(inputs, **kwargs):
    """Functional form: ``subtract([x1, x2])`` is ``Subtract(**kwargs)([x1, x2])``."""
    return Subtract(**kwargs)(inputs)
