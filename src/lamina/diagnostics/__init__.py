"""The activation doctor: model lint, activation health and linear folding.

* ``lint(model, x=None, y=None)`` — findings about activation mistakes (also run by ``compile`` and
  ``fit``; see :mod:`lamina.diagnostics.lint` for the rules);
* ``lamina.callbacks.ActivationHealth`` / ``fit(..., health=True)`` — dead and saturated units (a
  convolution's channels) and gradient norms per epoch (statistics in :mod:`lamina.diagnostics.health`);
* ``fold(model)`` — an equivalent inference model with linear layers merged and BatchNormalization
  folded into the Dense or convolution before it.
"""

from lamina.diagnostics.findings import Finding, HealthWarning, LintHint, LintWarning, ModelError
from lamina.diagnostics.fold import fold
from lamina.diagnostics.lint import lint

__all__ = ["Finding", "HealthWarning", "LintHint", "LintWarning", "ModelError", "fold", "lint"]
