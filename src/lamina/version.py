"""lamina's version, in a module of its own so that any rung of the ladder can read it."""

__version__ = "0.1.0"
