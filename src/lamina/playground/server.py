"""The playground's web server (aiohttp): the page, its two static files, and one WebSocket per page.

Safety, as the page can be reached by any site the user visits:

* it listens on 127.0.0.1 only;
* every request must name this server in ``Host`` (``127.0.0.1:PORT`` or ``localhost:PORT``), which
  defeats DNS rebinding; an ``Origin``, when sent (always by browsers for a WebSocket), must be this
  server's own; every request carries the random ``token`` printed with the URL;
* messages are JSON objects of at most ``MAX_MESSAGE`` bytes, at most ``RATE`` a second on average;
  settings go through :func:`lamina.playground.settings.validate`; nothing from the page reaches
  ``eval``, a file path or a shell (the only file written is the export, at a path the server makes).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import secrets
import threading
import time
from importlib import resources

from aiohttp import WSMsgType, web

from lamina.playground import export
from lamina.playground.session import Session
from lamina.playground.settings import SettingsError, choices, validate

__all__ = ["MAX_FPS", "MAX_MESSAGE", "MAX_SESSIONS", "PAGES", "RATE", "TOKEN", "PlaygroundServer", "create_app"]

MAX_MESSAGE = 16 * 1024  # bytes of one WebSocket message (settings are well under 2 KiB)
RATE, BURST = 20.0, 40  # messages a second on average, and the burst allowed above it
MAX_SESSIONS = 8  # open pages at once
MAX_FPS = 30.0  # frames a second pushed while playing (the page draws each)
STATIC = {"playground.js": "application/javascript", "playground.css": "text/css"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self' ws://127.0.0.1:* ws://localhost:*; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'none'")
log = logging.getLogger("lamina.playground")
TOKEN = web.AppKey("token", str)
PAGES = web.AppKey("pages", set)  # the open pages (_Page), each with its training loop


def _page_file(name: str) -> str:
    return resources.files("lamina.playground").joinpath("static", name).read_text(encoding="utf-8")


def _own_port(request: web.Request) -> int:
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    return int(sock[1]) if sock else -1


def _refuse(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=f"lamina playground: {message}\n")


@web.middleware
async def guard(request: web.Request, handler):
    """Host, Origin and token checks before any handler; safety headers on every answer."""
    port = _own_port(request)
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
    host = request.headers.get("Host", "")
    if host not in hosts:
        return _refuse(403, f"refused a request for Host {host[:80]!r}: this server answers only "
                            f"http://127.0.0.1:{port}/ (a check against DNS rebinding).")
    origin = request.headers.get("Origin")
    is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
    if (origin is not None or is_ws) and origin not in {f"http://{h}" for h in hosts}:
        return _refuse(403, f"refused a request from Origin {str(origin)[:80]!r}: only this server's own page "
                            "may drive it.")
    token = request.query.get("token", "")
    if not secrets.compare_digest(token.encode(), request.app[TOKEN].encode()):
        return _refuse(403, "missing or wrong token: open the URL that `lamina playground` printed.")
    response = await handler(request)
    response.headers.update({"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                             "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})
    return response


async def index(request: web.Request) -> web.Response:
    html = _page_file("index.html").replace("__TOKEN__", request.app[TOKEN])  # urlsafe characters only
    return web.Response(text=html, content_type="text/html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:  # a fixed list: the name never becomes a path
        return _refuse(404, f"no such file. Received: {name[:40]!r}")
    return web.Response(text=_page_file(name), content_type=STATIC[name])


class _Bucket:
    """A token bucket: ``RATE`` messages a second on average, bursts of ``BURST``."""

    def __init__(self):
        self.level, self.stamp = float(BURST), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.level = min(BURST, self.level + (now - self.stamp) * RATE)
        self.stamp = now
        if self.level < 1:
            return False
        self.level -= 1
        return True


class _Page:
    """One WebSocket's state: its session, play/pause, and the loop that trains while playing."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.session: Session | None = None
        self.playing = asyncio.Event()
        self.lock = asyncio.Lock()  # one computation at a time for this page
        self.loop_task = asyncio.create_task(self._train_loop())
        self.frames = 0

    async def send(self, obj: dict) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(_finite(obj), allow_nan=False))

    async def error(self, message: str, key: str | None = None) -> None:
        await self.send({"type": "error", "key": key, "message": message})

    async def _train_loop(self) -> None:
        while True:
            await self.playing.wait()
            start = time.perf_counter()
            if not await self._step():
                self.playing.clear()
                continue
            await asyncio.sleep(max(0.0, 1.0 / MAX_FPS - (time.perf_counter() - start)))

    async def _step(self) -> bool:
        async with self.lock:
            if self.session is None:
                return False
            try:
                frame = await asyncio.to_thread(self.session.advance)
            except Exception as err:  # a diverging or broken model stops its own loop, never the server
                log.exception("training failed")
                await self.error(f"training stopped: {type(err).__name__}: {str(err)[:300]}")
                return False
            self.frames += 1
            await self.send({**frame, "id": self.session.tag})  # inside the lock: never after a newer setup
        return True

    async def handle(self, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "settings":
            try:
                settings = validate(msg.get("settings"))
            except SettingsError as err:
                await self.error(str(err), err.key)
                return
            self.playing.clear()
            async with self.lock:
                try:
                    self.session = await asyncio.to_thread(Session, settings)
                    self.session.tag = _tag(msg.get("id"))
                except Exception as err:  # a valid setting lamina still cannot build: said on the page
                    log.exception("building the network failed")
                    await self.error(f"could not build this network: {type(err).__name__}: {str(err)[:300]}")
                    return
                await self.send({**self.session.setup(), "id": self.session.tag})
        elif kind in ("play", "pause", "step", "reset", "export"):
            if self.session is None:
                await self.error("send your settings first (a 'settings' message).")
            elif kind == "play":
                self.playing.set()
            elif kind == "pause":
                self.playing.clear()
            elif kind == "step":
                self.playing.clear()
                await self._step()
            elif kind == "reset":
                await self.handle({"type": "settings", "settings": self.session.settings.to_dict(),
                                   "id": self.session.tag})
            else:
                await self._export(msg.get("format"))
        else:
            await self.error(f"unknown message type; expected one of settings, play, pause, step, reset, export. "
                             f"Received: type={str(kind)[:40]!r}")

    async def _export(self, fmt) -> None:
        async with self.lock:
            if fmt == "keras":
                raw = await asyncio.to_thread(export.keras_bytes, self.session)
                await self.send({"type": "export", "format": "keras", "filename": "playground.keras",
                                 "data": base64.b64encode(raw).decode("ascii")})
            elif fmt == "python":
                code = export.python_code(self.session.settings, epochs=max(1, round(self.session.epoch)))
                await self.send({"type": "export", "format": "python", "filename": "playground.py", "text": code})
            else:
                await self.error(f"export format must be 'keras' or 'python'. Received: format={str(fmt)[:40]!r}",
                                 "format")

    def close(self) -> None:
        self.playing.clear()
        self.loop_task.cancel()


def _finite(obj):
    """``obj`` with every NaN or infinity replaced by None (JSON has neither; the page shows "nan")."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _tag(value) -> int | None:
    """The page's number for a settings message, echoed in its setup and frames (so the page can drop
    a frame of a network it has already replaced); anything but a small integer is ignored."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31
    return value if ok else None


async def _parse(page: _Page, bucket: _Bucket, msg) -> dict | None:
    """The message as a dict, or None after telling the page why it was refused."""
    if msg.type != WSMsgType.TEXT:
        await page.error("only JSON text messages are accepted.")
        return None
    if not bucket.take():
        await page.error(f"too many messages: at most {RATE:g} a second; this one was dropped.")
        return None
    try:
        data = json.loads(msg.data)
    except ValueError as err:
        await page.error(f"the message is not valid JSON ({err.msg} at character {err.pos}).")
        return None
    if not isinstance(data, dict):
        await page.error(f"a message must be a JSON object. Received: {type(data).__name__}")
        return None
    return data


async def websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    if len(app[PAGES]) >= MAX_SESSIONS:
        raise web.HTTPServiceUnavailable(text=f"lamina playground: at most {MAX_SESSIONS} pages at once.\n")
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=30)
    await ws.prepare(request)
    page = _Page(ws)
    app[PAGES].add(page)
    bucket = _Bucket()
    try:
        await page.send({"type": "hello", "choices": choices()})
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
            data = await _parse(page, bucket, msg)
            if data is not None:
                await page.handle(data)
    finally:
        page.close()  # the page went away: its training loop stops
        app[PAGES].discard(page)
    return ws


def create_app(token: str) -> web.Application:
    """The aiohttp application; every request must carry ``token``."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_MESSAGE)
    app[TOKEN] = token
    app[PAGES] = set()
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/ws", websocket)
    return app


class PlaygroundServer:
    """The server on 127.0.0.1, run in a background thread (``start``/``stop``) or in the foreground."""

    def __init__(self, port: int = 0, token: str | None = None):
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    async def _open(self) -> None:
        self._runner = web.AppRunner(create_app(self.token), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)  # loopback only, never 0.0.0.0
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def start(self) -> PlaygroundServer:
        """Serve from a background thread; returns once the port is bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._open())
            except BaseException as err:  # reported to start()'s caller
                failure.append(err)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._close())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="lamina-playground", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def serve_forever(self, on_ready=None) -> None:
        """Serve in the foreground until Ctrl+C; ``on_ready(url)`` runs once the port is bound."""
        async def main():
            await self._open()
            if on_ready:
                on_ready(self.url)
            try:
                await asyncio.Event().wait()
            finally:
                await self._close()

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass
