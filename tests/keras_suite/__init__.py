"""Keras 3's own test files, run against lamina (issue 13).

The files come from Keras's source distribution, fetched once into a cache outside the repository
(``sdist``); at run time they are copied to a temporary folder and run by pytest in a subprocess whose
first ``sys.meta_path`` finder (``aliasing``) resolves every ``keras`` / ``keras.src...`` import to
lamina, so real Keras is never imported there. ``testing_stub`` is the NumPy stand-in for
``keras.src.testing.TestCase``; ``manifest`` lists the files per module; ``report`` counts and groups
the outcomes. Entry point: ``scripts/keras_suite.py``. lamina's own ``pytest`` run does not collect
this package (see ``tests/conftest.py``).
"""
