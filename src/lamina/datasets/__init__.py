"""Datasets: ``fashion_mnist``, ``mnist``, ``imdb`` and ``reuters`` (Keras's ``load_data()``), and the
``make_circles`` toy.

Data is read from ``$LAMINA_DATA/<name>/``, the cache ``~/.lamina/datasets/<name>/``, a system
package (Debian's ``dataset-fashion-mnist``) or downloaded and SHA-256-verified into the cache.
"""

from lamina.datasets import circles, fashion_mnist, imdb, mnist, reuters
from lamina.datasets._files import DatasetUnavailableError
from lamina.datasets.circles import make_circles

__all__ = ["DatasetUnavailableError", "circles", "fashion_mnist", "imdb", "make_circles", "mnist", "reuters"]
