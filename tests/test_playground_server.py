"""The playground's server through aiohttp's test client: the token, Host and Origin checks, and the
WebSocket's refusals (bad JSON, out-of-range values, unknown names, size, rate), each a clear message
with the server still serving; play/step/export; a closed page stops its training loop."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="the playground extra (aiohttp) is not installed")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

import lamina  # noqa: E402
from lamina import cli  # noqa: E402
from lamina.playground import server  # noqa: E402

TOKEN = "test-token-123"


def run(scenario):
    """Run ``scenario(client, port)`` against a fresh app on 127.0.0.1."""
    async def main():
        app = server.create_app(TOKEN)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await scenario(client, client.server.port, app)
    asyncio.run(main())


def ws_url(token=TOKEN):
    return f"/ws?token={token}"


async def _open(client, port):
    ws = await client.ws_connect(ws_url(), origin=f"http://127.0.0.1:{port}")
    hello = await ws.receive_json(timeout=10)
    assert hello["type"] == "hello" and "relu" in hello["choices"]["activations"]
    return ws


async def _settings(ws, settings=None):
    await ws.send_json({"type": "settings", "settings": settings or {}})
    return await ws.receive_json(timeout=30)


def test_page_needs_the_token_and_carries_it_to_its_files():
    async def scenario(client, port, app):
        bad = await client.get("/")
        assert bad.status == 403 and "missing or wrong token" in await bad.text()
        assert (await client.get("/?token=wrong")).status == 403
        page = await client.get(f"/?token={TOKEN}")
        html = await page.text()
        assert page.status == 200 and f"/static/playground.js?token={TOKEN}" in html
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["Referrer-Policy"] == "no-referrer"
        js = await client.get(f"/static/playground.js?token={TOKEN}")
        assert js.status == 200 and js.content_type == "application/javascript"
        assert (await client.get("/static/playground.js")).status == 403
        missing = await client.get(f"/static/..%2Fserver.py?token={TOKEN}")
        assert missing.status == 404
        assert (await client.post(f"/?token={TOKEN}")).status == 405
    run(scenario)


def test_wrong_host_and_wrong_origin_are_refused():
    async def scenario(client, port, app):
        rebound = await client.get(f"/?token={TOKEN}", headers={"Host": f"evil.example:{port}"})
        assert rebound.status == 403 and "DNS rebinding" in await rebound.text()
        other_port = await client.get(f"/?token={TOKEN}", headers={"Host": "127.0.0.1:1"})
        assert other_port.status == 403
        assert (await client.get(f"/?token={TOKEN}", headers={"Host": f"localhost:{port}"})).status == 200
        foreign = await client.get(f"/?token={TOKEN}", headers={"Origin": "http://evil.example"})
        assert foreign.status == 403 and "Origin 'http://evil.example'" in await foreign.text()
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await client.ws_connect(ws_url(), origin="http://evil.example")
        assert info.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError):  # a WebSocket must say where it comes from
            await client.ws_connect(ws_url())
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await client.ws_connect(ws_url("nope"), origin=f"http://127.0.0.1:{port}")
        ws = await _open(client, port)  # and the server still serves
        await ws.close()
    run(scenario)


@pytest.mark.parametrize("raw, words", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object. Received: list"),
    (json.dumps({"type": "settings", "settings": {"noise": 9}}), "`noise` must be a number from 0 to 0.5"),
    (json.dumps({"type": "settings", "settings": {"noise": float("nan")}}), "Received: noise=nan"),
    (json.dumps({"type": "settings", "settings": {"layers": [{"units": 8, "activation": "os.system"}]}}),
     "`layers[1].activation` must be one of: linear, relu"),
    (json.dumps({"type": "settings", "settings": {"layers": [{"units": 0, "activation": "relu"}]}}),
     "from 1 to 64. Received: layers[1].units=0"),
    (json.dumps({"type": "settings", "settings": {"learning_rate": 1e9}}), "`learning_rate` must be a number"),
    (json.dumps({"type": "launch"}), "unknown message type"),
    (json.dumps({"type": "play"}), "send your settings first"),
])
def test_bad_messages_get_a_clear_error_and_the_server_still_serves(raw, words):
    async def scenario(client, port, app):
        ws = await _open(client, port)
        await ws.send_str(raw)
        reply = await ws.receive_json(timeout=10)
        assert reply["type"] == "error" and words in reply["message"], reply
        setup = await _settings(ws)
        assert setup["type"] == "setup"
        await ws.close()
    run(scenario)


def test_binary_oversized_and_too_many_messages_are_refused():
    async def scenario(client, port, app):
        ws = await _open(client, port)
        await ws.send_bytes(b"\x00\x01")
        assert "only JSON text" in (await ws.receive_json(timeout=10))["message"]
        for _ in range(server.BURST + 5):
            await ws.send_str("{}")
        replies = [(await ws.receive_json(timeout=10))["message"] for _ in range(server.BURST + 5)]
        assert any("too many messages" in r for r in replies)
        await ws.send_str(json.dumps({"type": "settings", "settings": {"seed": 1}, "pad": "x" * server.MAX_MESSAGE}))
        closing = await ws.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        ws2 = await _open(client, port)  # a new page is still served
        assert (await _settings(ws2))["type"] == "setup"
        await ws2.close()
    run(scenario)


def test_play_pushes_frames_step_trains_once_and_export_gives_a_keras_file(tmp_path):
    async def scenario(client, port, app):
        ws = await _open(client, port)
        setup = await _settings(ws, {"points": 200})
        assert setup["frame"]["step"] == 0 and len(setup["train"]) == 100
        await ws.send_json({"type": "step"})
        frame = await ws.receive_json(timeout=30)
        assert frame["type"] == "frame" and frame["step"] == 1
        await ws.send_json({"type": "play"})
        steps = [(await ws.receive_json(timeout=30))["step"] for _ in range(5)]
        assert steps == list(range(2, 7))
        await ws.send_json({"type": "pause"})
        await ws.send_json({"type": "export", "format": "keras"})
        while (msg := await ws.receive_json(timeout=30))["type"] == "frame":
            pass  # frames already on their way when pause arrived
        assert msg["type"] == "export" and msg["filename"] == "playground.keras"
        path = tmp_path / "p.keras"
        path.write_bytes(base64.b64decode(msg["data"]))
        assert lamina.models.load_model(str(path)).count_params() > 0
        await ws.send_json({"type": "export", "format": "python"})
        code = await ws.receive_json(timeout=30)
        assert code["filename"] == "playground.py" and "model.fit(" in code["text"]
        await ws.send_json({"type": "export", "format": "../../x"})
        assert "export format must be" in (await ws.receive_json(timeout=10))["message"]
    run(scenario)


def test_a_closed_page_stops_its_training_loop():
    async def scenario(client, port, app):
        ws = await _open(client, port)
        await _settings(ws, {"points": 100})
        await ws.send_json({"type": "play"})
        await ws.receive_json(timeout=30)
        (page,) = app[server.PAGES]
        await ws.close()
        for _ in range(100):
            if not app[server.PAGES] and page.loop_task.done():
                break
            await asyncio.sleep(0.05)
        assert not app[server.PAGES] and page.loop_task.cancelled()
    run(scenario)


def test_threaded_server_binds_loopback_and_prints_a_token_url():
    srv = server.PlaygroundServer().start()
    try:
        assert srv.url.startswith(f"http://127.0.0.1:{srv.port}/?token=") and len(srv.token) >= 32
        assert srv.port > 0
    finally:
        srv.stop()


def test_cli_refuses_a_port_out_of_range(capsys):
    assert cli.main(["playground", "--port", "70000", "--no-browser"]) == 2
    assert "--port must be from 0" in capsys.readouterr().err


def test_the_command_prints_a_loopback_url_with_a_token_and_serves_it():
    with subprocess.Popen([sys.executable, "-m", "lamina.cli", "playground", "--no-browser"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stdout.readline()
            url = re.search(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{32,}", line)
            assert url, line
            with urllib.request.urlopen(url.group(0), timeout=30) as page:
                assert page.status == 200 and b"lamina playground" in page.read()
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(url.group(0).split("?")[0], timeout=30)
            info.value.close()
            assert info.value.code == 403
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
