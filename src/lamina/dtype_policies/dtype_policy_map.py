"""``DTypePolicyMap``: layer paths (or regular expressions over them) → dtype policies.

A composite layer's config can carry one map instead of one policy, so that its sublayers keep
different policies (a quantized attention projection beside float ones). Read with a layer's
``path``: an exact key wins, else the one pattern that ``re.fullmatch``-es it, else the default.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping

from lamina.dtype_policies.dtype_policy import DTypePolicy, dtype_policy, register_policy_class
from lamina.dtype_policies.lookup import deserialize, get, serialize


class DTypePolicyMap(DTypePolicy, MutableMapping):
    """A dict of path → :class:`DTypePolicy` that is itself a policy (its default's dtypes).

    Args:
        default_policy: the policy for paths no key matches (a name, a policy, or None: the global
            policy at the time of reading).
        policy_map: an initial dict of path → policy.
    """

    def __init__(self, default_policy=None, policy_map: dict | None = None):
        if isinstance(default_policy, DTypePolicyMap):
            raise ValueError("`default_policy` cannot be a `DTypePolicyMap`. "
                             f"Received: default_policy={default_policy!r}")
        if policy_map is not None and not isinstance(policy_map, dict):
            raise TypeError("If specified, `policy_map` must be a dict. "
                            f"Received: policy_map={policy_map!r} of type {type(policy_map).__name__}")
        self._default_policy_arg = default_policy
        self._default_policy = None if default_policy is None else get(default_policy)
        self._policy_map: dict[str, DTypePolicy] = {}
        for key, policy in (policy_map or {}).items():
            self[key] = policy

    @property
    def default_policy(self) -> DTypePolicy:
        """The policy for unmatched paths: the one given, else the global policy now."""
        return self._default_policy if self._default_policy is not None else dtype_policy()

    @property
    def _name(self) -> str:  # DTypePolicy's __eq__ and repr read it
        return f"map_{self.default_policy.name}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def compute_dtype(self) -> str:
        return self.default_policy.compute_dtype

    @property
    def variable_dtype(self) -> str:
        return self.default_policy.variable_dtype

    @property
    def quantization_mode(self):
        return self.default_policy.quantization_mode

    def __getitem__(self, key: str) -> DTypePolicy:
        if key in self._policy_map:
            return self._policy_map[key]
        matching = [pattern for pattern in self._policy_map if re.fullmatch(pattern, key)]
        if len(matching) > 1:
            raise ValueError(f"Path '{key}' matches multiple dtype policy specification keys: {matching}. "
                             "Make sure each path matches at most one key of the DTypePolicyMap.")
        return self._policy_map[matching[0]] if matching else self.default_policy

    def __setitem__(self, key: str, policy) -> None:
        if key in self._policy_map:
            raise ValueError(f"{key} already exists in the DTypePolicyMap with value {self._policy_map[key]}: "
                             "keys may not repeat. Received: a second policy for it")
        try:
            policy = get(policy)
        except (TypeError, ValueError):
            raise ValueError("Cannot interpret the assigned value by `keras.dtype_policies.get`. "
                             f"Received: {policy!r} of type {type(policy).__name__}") from None
        self._policy_map[key] = policy

    def __delitem__(self, key: str) -> DTypePolicy:
        return self._policy_map.pop(key)

    def __contains__(self, key) -> bool:
        return key in self._policy_map

    def __len__(self) -> int:
        return len(self._policy_map)

    def __iter__(self):
        return iter(self._policy_map)

    def __eq__(self, other) -> bool:
        return (type(other) is DTypePolicyMap and self.default_policy == other.default_policy
                and self._policy_map == other._policy_map)

    __hash__ = None  # mutable
    _is_policy_map = True  # layers read it per call; deserialize passes custom_objects on to from_config

    def get_config(self) -> dict:
        default = self._default_policy_arg
        return {"default_policy": serialize(default) if isinstance(default, DTypePolicy) else default,
                "policy_map": {key: serialize(policy) for key, policy in self._policy_map.items()}}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> DTypePolicyMap:
        config = dict(config)
        config["policy_map"] = {key: deserialize(value, custom_objects) if isinstance(value, dict) else value
                                for key, value in (config.get("policy_map") or {}).items()}
        if isinstance(config.get("default_policy"), dict):
            config["default_policy"] = deserialize(config["default_policy"], custom_objects)
        return cls(**config)

    def __repr__(self) -> str:
        return f"<DTypePolicyMap at 0x{id(self):x} default_policy={self.default_policy.name!r} " \
               f"policy_map={ {k: v.name for k, v in self._policy_map.items()} }>"


register_policy_class(DTypePolicyMap)
