"""The one error type for files lamina refuses to load."""

from __future__ import annotations


class FileFormatError(ValueError):
    """A model or weights file that is malformed, inconsistent with the model, or unsafe to load.

    Raised before any weight is changed. The message names the file and the problem. A subclass of
    ``ValueError``, so ``except ValueError`` also catches it.
    """

    def __init__(self, filename, problem: str):
        self.filename = None if filename is None else str(filename)
        self.problem = problem
        where = f"'{self.filename}'" if self.filename else "<in-memory file>"
        super().__init__(f"Cannot load {where}: {problem}")


class MissingFileError(FileNotFoundError, ValueError):
    """A path given to load from that does not exist. A ``FileNotFoundError``, and a ``ValueError`` as
    Keras raises for it, so code written for either catches it."""
