"""``DTypePolicy``: the dtype a layer computes in and the dtype it keeps its variables in.

A policy named for a float dtype (``"float32"``, ``"bfloat16"``...) computes and stores in that
dtype; ``"mixed_float16"`` / ``"mixed_bfloat16"`` compute in the 16-bit dtype and keep variables in
float32 (mixed precision). The global default policy follows ``floatx`` until
:func:`set_dtype_policy` is called.

Other policy families (quantized ones: ``"int8_from_float32"``) plug in through
:func:`register_name_parser`: a name containing the parser's marker is handed to it.
"""

from __future__ import annotations

from collections.abc import Callable

from lamina import backend

_MIXED = {"mixed_float16": ("float16", "float32"), "mixed_bfloat16": ("bfloat16", "float32")}

# marker substring → factory(name) -> DTypePolicy; filled by policy families that sit beside this file.
_NAME_PARSERS: dict[str, Callable[[str], DTypePolicy]] = {}
# class name → class, for deserialize: the float classes here, other families add theirs.
POLICY_CLASSES: dict[str, type] = {}


def register_name_parser(marker: str, factory: Callable[[str], DTypePolicy]) -> None:
    """Make :func:`policy_from_name` hand every name containing ``marker`` to ``factory(name)``."""
    _NAME_PARSERS[marker] = factory


def register_policy_class(cls: type) -> type:
    """Make ``cls`` (a DTypePolicy subclass) loadable from a config naming its class; returns ``cls``."""
    POLICY_CLASSES[cls.__name__] = cls
    return cls


def policy_from_name(name: str) -> DTypePolicy:
    """The policy a name stands for: a registered family's (by marker) or a float ``DTypePolicy``."""
    for marker, factory in _NAME_PARSERS.items():
        if marker in name:
            return factory(name)
    return DTypePolicy(name)


class DTypePolicy:
    """A layer's dtype policy: ``compute_dtype`` (inputs, outputs, arithmetic) and ``variable_dtype``.

    Args:
        name: a float dtype name (both dtypes are that one), ``"mixed_float16"`` or
            ``"mixed_bfloat16"`` (compute in the 16-bit dtype, variables in float32). None: the
            global policy's name.
    """

    _is_policy_map = False  # True on DTypePolicyMap: a plain attribute test, cheaper than isinstance on an ABC

    def __init__(self, name: str | None = None):
        if name is None:
            name = dtype_policy().name
        self._name = name
        self._compute_dtype, self._variable_dtype = self._parse_name(name)
        self._quantization_mode = None

    @staticmethod
    def _parse_name(name) -> tuple[str, str]:
        if not isinstance(name, str):
            raise TypeError(f"'name' must be a string, such as 'mixed_float16'. "
                            f"Received: name={name!r} (of type {type(name).__name__})")
        if name in _MIXED:
            compute, variable = _MIXED[name]
            return backend.standardize_dtype(compute), variable  # bfloat16 loads ml_dtypes
        try:
            dtype = backend.standardize_dtype(name)
        except (TypeError, ValueError):
            dtype = None
        if dtype is None:
            raise ValueError(f"Cannot convert '{name}' to a DTypePolicy: expected 'mixed_float16', "
                             f"'mixed_bfloat16' or the name of a dtype such as 'float32'. Received: name={name!r}")
        return dtype, dtype

    @property
    def name(self) -> str:
        return self._name

    @property
    def compute_dtype(self) -> str:
        """The dtype of a layer's inputs, outputs and arithmetic under this policy."""
        return self._compute_dtype

    @property
    def variable_dtype(self) -> str:
        """The dtype a layer creates its variables in (regularizers run in it too)."""
        return self._variable_dtype

    @property
    def quantization_mode(self) -> str | None:
        """The quantization mode (``"int8"``...) of a quantized policy; None for a float policy."""
        return self._quantization_mode

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> DTypePolicy:
        return cls(**config)

    def __repr__(self) -> str:
        class_name = "DTypePolicy" if type(self) is FloatDTypePolicy else type(self).__name__
        return f'<{class_name} "{self._name}">'

    def __eq__(self, other) -> bool:
        plain = (DTypePolicy, FloatDTypePolicy)
        if type(self) in plain:
            if type(other) not in plain:
                return False
        elif type(other) is not type(self):
            return False
        return self._name == other._name

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._name))


class FloatDTypePolicy(DTypePolicy):
    """Keras's other name for a float :class:`DTypePolicy` (equal to one of the same name)."""


register_policy_class(DTypePolicy)
register_policy_class(FloatDTypePolicy)


def set_dtype_policy(policy) -> None:
    """Set the global dtype policy: a policy name (``"mixed_float16"``) or a :class:`DTypePolicy`."""
    if not isinstance(policy, DTypePolicy):
        if not isinstance(policy, str):
            raise ValueError("Invalid `policy` argument: expected the name of a policy (such as "
                             f"'mixed_float16') or a DTypePolicy. Received: policy={policy!r} "
                             f"(of type {type(policy).__name__})")
        policy = policy_from_name(policy)
    backend.set_global_dtype_policy(policy)


def dtype_policy() -> DTypePolicy:
    """The global dtype policy: the one set by :func:`set_dtype_policy`, else the one named by
    ``floatx()`` (so ``set_floatx`` changes the dtype of layers made later, until a policy is set;
    ``clear_session`` forgets a set policy)."""
    policy = backend.global_dtype_policy()
    if policy is not None:
        return policy
    policy = backend.floatx_dtype_policy()
    if policy is None or policy.name != backend.floatx():
        policy = DTypePolicy(backend.floatx())
        backend.set_floatx_dtype_policy(policy)
    return policy
