"""Default object names as Keras gives them: the class name in snake_case, made unique by one
counter shared by layers, models, metrics, optimizers and losses (``dense``, ``dense_1``, ...)."""

from __future__ import annotations

import collections
import re

_UIDS: collections.defaultdict = collections.defaultdict(int)


def to_snake_case(name: str) -> str:
    """``"TopKCategoricalAccuracy"`` -> ``"top_k_categorical_accuracy"``, ``"KLDivergence"`` -> ``"kl_divergence"``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def uniquify(name: str) -> str:
    """``name`` the first time, then ``name_1``, ``name_2``, ..."""
    n = _UIDS[name]
    _UIDS[name] += 1
    return name if n == 0 else f"{name}_{n}"


def auto_name(class_name: str) -> str:
    """A fresh default name for an object of class ``class_name``."""
    return uniquify(to_snake_case(class_name))


def reset_uids() -> None:
    """Forget every name handed out: the next ``Dense`` is ``dense`` again (``clear_session``)."""
    _UIDS.clear()
