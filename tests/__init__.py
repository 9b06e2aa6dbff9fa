"""lamina's test suite, a package so that its shared helpers import as ``tests.helpers``.

The repository root is put on the import path by ``pythonpath = ["."]`` in pyproject.toml's pytest table.
"""
