"""``lamina playground``: the activation playground in the browser, trained live on lamina.

* :mod:`~lamina.playground.settings` — what the page may set, and its validation;
* :mod:`~lamina.playground.data` — the data sets and input features;
* :mod:`~lamina.playground.network` — the Keras model the settings describe;
* :mod:`~lamina.playground.session` — one page's training, frames, health and lint;
* :mod:`~lamina.playground.export` — the ``.keras`` file and the Python script;
* :mod:`~lamina.playground.server` — the aiohttp server (the ``playground`` extra).
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(port: int = 0, open_browser: bool = True) -> int:
    """Serve the playground on 127.0.0.1 until Ctrl+C; prints the URL (with its token)."""
    try:
        from lamina.playground.server import PlaygroundServer  # optional extra: aiohttp
    except ImportError as err:
        print(f"lamina playground needs the `playground` extra (pip install 'lamina[playground]'): {err}",
              file=sys.stderr)
        return 1

    def ready(url: str) -> None:
        print(f"lamina playground is running at {url}\n(Ctrl+C stops it.)", flush=True)
        if open_browser:
            import webbrowser  # lazy: only when a browser is to be opened

            webbrowser.open(url)

    try:
        PlaygroundServer(port=port).serve_forever(on_ready=ready)
    except OSError as err:
        print(f"lamina playground could not listen on 127.0.0.1:{port}: {err.strerror or err}", file=sys.stderr)
        return 1
    return 0
