"""What the activation doctor reports: a :class:`Finding`, the :class:`ModelError` that stops
``compile``/``fit`` on an error, and the warning categories users can filter."""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ("error", "warning", "hint")


class LintWarning(UserWarning):
    """A model-lint warning (a likely mistake that still trains). Silence them with
    ``warnings.filterwarnings("ignore", category=lamina.diagnostics.LintWarning)``."""


class LintHint(LintWarning):
    """A model-lint hint: a choice that often trains badly (a subclass of :class:`LintWarning`)."""


class HealthWarning(UserWarning):
    """Raised (as a warning) by ``ActivationHealth`` when a layer crosses a health threshold."""


@dataclass(frozen=True)
class Finding:
    """One lint finding.

    Attributes:
        rule: a stable identifier, e.g. ``"softmax-single-unit"``.
        severity: ``"error"``, ``"warning"`` or ``"hint"``.
        layers: names of the layers involved, in model order.
        message: what is wrong, in the user's terms.
        fix: one sentence on how to fix it.
    """

    rule: str
    severity: str
    layers: tuple[str, ...]
    message: str
    fix: str
    details: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"Finding severity must be one of {SEVERITIES}. Received: severity={self.severity!r}")

    def __str__(self) -> str:
        where = f" [{', '.join(self.layers)}]" if self.layers else ""
        return f"{self.severity} {self.rule}{where}: {self.message} Fix: {self.fix}"


class ModelError(ValueError):
    """A model that cannot train as written; ``findings`` lists every error found.

    Pass ``lint="warn"`` to ``compile`` to turn these errors into warnings, or ``lint=False`` to
    skip the checks.
    """

    def __init__(self, findings):
        self.findings = list(findings)
        lines = "\n".join(f"  - {f}" for f in self.findings)
        n = len(self.findings)
        super().__init__(
            f"The model has {n} error{'s' if n != 1 else ''} that would make training meaningless:\n{lines}\n"
            "(compile(..., lint='warn') turns these into warnings; lint=False skips the checks.)"
        )
