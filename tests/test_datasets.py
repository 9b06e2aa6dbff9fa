"""Tests for lamina.datasets: IDX parsing, lookup order, verified downloads (from a local server
only, never the network), the real Debian Fashion-MNIST files where installed, and make_circles."""

import gzip
import hashlib
import importlib.util
import io
import os
import struct
import threading
import tracemalloc
import urllib.error
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import lamina
from lamina.datasets import DatasetUnavailableError, _files, _safe_io, circles, fashion_mnist, make_circles, mnist

IDX_NAMES = _files.IDX_FILES
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


# ------------------------------------------------------------------------------------------ helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format: 0x0000, type 0x08, ndim, big-endian dims, data."""
    header = bytes((0, 0, 0x08, arr.ndim)) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def synthetic(seed: int, n_train: int = 5, n_test: int = 3):
    """Random MNIST-shaped splits; distinct seeds give distinct data, so a test can tell sources apart."""
    rng = np.random.default_rng(seed)
    train = (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, np.uint8))
    test = (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, np.uint8))
    return train, test


def idx_payloads(data) -> dict:
    """IDX file name (``.gz``) -> uncompressed IDX bytes, for the splits ``data``."""
    (x, y), (xt, yt) = data
    return dict(zip(IDX_NAMES, (idx_bytes(x), idx_bytes(y), idx_bytes(xt), idx_bytes(yt)), strict=True))


def write_idx_folder(folder, data, compress=True):
    os.makedirs(folder, exist_ok=True)
    for name, raw in idx_payloads(data).items():
        if compress:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(gzip.compress(raw, mtime=0))
        else:
            with open(os.path.join(folder, name[:-3]), "wb") as f:
                f.write(raw)


def npz_bytes(data, **overrides) -> bytes:
    (x, y), (xt, yt) = data
    arrays = {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt, **overrides}
    buf = io.BytesIO()
    np.savez(buf, **{k: v for k, v in arrays.items() if v is not None})
    return buf.getvalue()


def assert_same(loaded, data):
    for got, want in zip((*loaded[0], *loaded[1]), (*data[0], *data[1]), strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


def files_in(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Isolated lookup: HOME in tmp, no LAMINA_DATA / LAMINA_DATASETS_URL, no Debian folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("LAMINA_DATA", raising=False)
    monkeypatch.delenv("LAMINA_DATASETS_URL", raising=False)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", str(tmp_path / "no-system-package"))
    # A dead address: any download a test did not plan for fails instead of reaching the network.
    monkeypatch.setattr(fashion_mnist, "BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setattr(mnist, "BASE_URL", "http://127.0.0.1:9/")
    return tmp_path


class LocalServer:
    """An HTTP server on 127.0.0.1 serving ``routes``: URL path -> (body, declared Content-Length).

    A body may also be a list of chunks (see ``stream``); ``sent`` counts the bytes the server got
    out for each path before the client hung up.
    """

    def __init__(self):
        self.routes: dict[str, tuple[bytes | list, int | None]] = {}
        self.requests: list[str] = []
        self.sent: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, length = server.routes[self.path]
                self.send_response(200)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body) if length is None else length))
                elif length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                server.sent[self.path] = 0
                try:
                    for chunk in [body] if isinstance(body, bytes) else body:
                        self.wfile.write(chunk)  # HTTP/1.0: the connection closes at the end, even if it lied
                        server.sent[self.path] += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def serve(self, name, body, length=None):
        self.routes[f"/data/{name}"] = (body, length)

    def stream(self, name, chunk, repeat, length=None):
        """Serve ``chunk`` ``repeat`` times; no Content-Length unless ``length`` is given."""
        self.routes[f"/data/{name}"] = ([chunk] * repeat, length)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = LocalServer()
    yield srv
    srv.stop()


def serve_fashion(server, monkeypatch, data):
    """Serve ``data`` as the four gz files and make their data hashes the expected ones."""
    payloads = idx_payloads(data)
    for name, raw in payloads.items():
        server.serve(name, gzip.compress(raw, mtime=0))
    files = tuple(
        _files.RemoteFile(n, hashlib.sha256(raw).hexdigest(), len(raw), gunzip=True) for n, raw in payloads.items()
    )
    monkeypatch.setattr(fashion_mnist, "FILES", files)
    monkeypatch.setenv("LAMINA_DATASETS_URL", server.url)
    return payloads


# ------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path, compress):
    data = synthetic(0)
    write_idx_folder(tmp_path, data, compress=compress)
    loaded = _files.load_idx_folder(str(tmp_path))
    assert_same(loaded, data)
    assert loaded[0][0].flags.writeable  # users may edit the arrays in place, as with Keras's


def _bad_idx_files():
    x = np.zeros((2, 28, 28), np.uint8)
    good = idx_bytes(x)
    return {
        "wrong type code": bytes((0, 0, 0x0D, 3)) + good[4:],
        "wrong ndim": bytes((0, 0, 0x08, 2)) + good[4:],
        "nonzero first bytes": bytes((1, 0, 0x08, 3)) + good[4:],
        "short header": good[:7],
        "wrong image size": idx_bytes(np.zeros((2, 27, 28), np.uint8)),
        "truncated data": good[:-1],
        "extra data": good + b"\x00",
    }


@pytest.mark.parametrize("case", sorted(_bad_idx_files()))
@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_rejects_malformed_files(tmp_path, case, compress):
    raw = _bad_idx_files()[case]
    path = tmp_path / ("bad-images.gz" if compress else "bad-images")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(ValueError, match=r"Malformed IDX file .*bad-images"):
        _files.read_idx(str(path), 3, (28, 28))


@pytest.mark.parametrize(
    "content", [b"this is not gzip data", gzip.compress(idx_bytes(np.zeros((2, 28, 28), np.uint8)))[:-12]]
)
def test_read_idx_rejects_broken_gzip(tmp_path, content):
    path = tmp_path / "broken.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"Malformed IDX file .*broken\.gz.*gzip"):
        _files.read_idx(str(path), 3, (28, 28))


def test_image_and_label_counts_must_agree(tmp_path):
    (tmp_path / "x.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8))))
    (tmp_path / "y.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((2,), np.uint8))))
    with pytest.raises(ValueError, match=r"x\.gz and .*y\.gz disagree: 3 images but 2 labels"):
        _files.read_idx_pair(str(tmp_path / "x.gz"), str(tmp_path / "y.gz"))


def test_malformed_local_file_is_reported_not_skipped(env, monkeypatch):
    folder = env / "data" / "fashion-mnist"
    write_idx_folder(folder, synthetic(1))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x09junk"))
    monkeypatch.setenv("LAMINA_DATA", str(env / "data"))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        fashion_mnist.load_data()


def call_with_deadline(fn, fifo=None, seconds=10.0):
    """``fn()``'s result or exception, failing the test if it has not returned after ``seconds``.

    A reader blocked opening ``fifo`` is released (by opening its write end) so that a failing test
    does not leave a stuck thread behind.
    """
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(seconds)
        pytest.fail(f"still blocked after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def make_not_regular(path, kind):
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        os.mkdir(path)
    else:  # a character device, through a symlink
        os.symlink(os.devnull, path)


NOT_REGULAR = {"fifo": "a FIFO", "directory": "a directory", "device": "a character device"}


@pytest.mark.parametrize("kind", sorted(NOT_REGULAR))
@pytest.mark.parametrize("name", ["bad-images.gz", "bad-images"])
def test_read_idx_refuses_what_is_not_a_regular_file(tmp_path, kind, name):
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = str(tmp_path / name)
    make_not_regular(path, kind)
    expected = rf"Dataset file .*{name} is {NOT_REGULAR[kind]}.*, not a regular file.*Received: [pdc]"
    with pytest.raises(ValueError, match=expected):
        call_with_deadline(lambda: _files.read_idx(path, 3, (28, 28)), fifo=path if kind == "fifo" else None)


@pytest.mark.parametrize("kind", sorted(NOT_REGULAR))
def test_lamina_data_entry_that_is_not_a_regular_file_is_reported(env, monkeypatch, kind):
    # Not skipped as "missing" (which would send the user to a download): named, and nothing waits.
    folder = env / "data" / "fashion-mnist"
    write_idx_folder(folder, synthetic(20))
    target = str(folder / IDX_NAMES[2])
    os.remove(target)
    make_not_regular(target, kind)
    monkeypatch.setenv("LAMINA_DATA", str(env / "data"))
    fifo = target if kind == "fifo" else None
    with pytest.raises(ValueError, match=rf"{IDX_NAMES[2]} is {NOT_REGULAR[kind]}"):
        call_with_deadline(fashion_mnist.load_data, fifo=fifo)
    os.remove(target) if kind != "directory" else os.rmdir(target)
    (env / "data" / "mnist").mkdir()
    make_not_regular(str(env / "data" / "mnist" / "mnist.npz"), kind)
    fifo = str(env / "data" / "mnist" / "mnist.npz") if kind == "fifo" else None
    with pytest.raises(ValueError, match=rf"mnist\.npz is {NOT_REGULAR[kind]}"):
        call_with_deadline(mnist.load_data, fifo=fifo)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_header_declaring_more_than_the_file_holds_names_the_file(tmp_path, compress):
    # 2**32 - 1 images of 28x28: 3.4 TB declared by a file of a few bytes. No allocation is tried.
    raw = bytes((0, 0, 0x08, 3)) + struct.pack(">3I", 2**32 - 1, 28, 28) + bytes(784)
    path = tmp_path / ("huge-images.gz" if compress else "huge-images")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    held = r"more than the \d+-byte gzip file can hold" if compress else r"more than the 800-byte file holds"
    with pytest.raises(ValueError, match=rf"Malformed IDX file .*huge-images.*\(4294967295, 28, 28\).*{held}"):
        _files.read_idx(str(path), 3, (28, 28))


def test_gzip_idx_overstating_its_size_costs_only_the_data_it_holds(tmp_path):
    # 200 KB of incompressible images in a gzip file that could hold 200 MB: a header declaring
    # 100 MB passes the size bound, so the data is read in chunks rather than allocated up front.
    images = np.random.default_rng(0).integers(0, 256, (256, 28, 28), dtype=np.uint8)
    raw = bytes((0, 0, 0x08, 3)) + struct.pack(">3I", 128_000, 28, 28) + images.tobytes()
    path = tmp_path / "short-images.gz"
    path.write_bytes(gzip.compress(raw))
    was_tracing = tracemalloc.is_tracing()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        with pytest.raises(ValueError, match=r"short-images\.gz.*declares shape \(128000, 28, 28\).*only 200704 of"):
            _files.read_idx(str(path), 3, (28, 28))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert peak < 20_000_000, peak  # the 100 MB declared were never allocated


def npy_member(shape, data: bytes, dtype="|u1") -> bytes:
    """An .npy file whose header declares ``shape`` but that holds ``data``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def npz_with(members: dict, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, payload in members.items():
            zf.writestr(name + ".npy", payload)
    return buf.getvalue()


def good_members(data) -> dict:
    (x, y), (xt, yt) = data
    out = {}
    for name, arr in (("x_train", x), ("y_train", y), ("x_test", xt), ("y_test", yt)):
        buf = io.BytesIO()
        np.save(buf, arr)
        out[name] = buf.getvalue()
    return out


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npz_header_declaring_a_trillion_elements_names_the_file(env, monkeypatch, compression):
    members = good_members(synthetic(21))
    members["x_train"] = npy_member((1_275_510_204, 28, 28), bytes(5 * 784))  # 10**12 bytes declared
    (env / "data" / "mnist").mkdir(parents=True)
    (env / "data" / "mnist" / "mnist.npz").write_bytes(npz_with(members, compression))
    monkeypatch.setenv("LAMINA_DATA", str(env / "data"))
    with pytest.raises(ValueError, match=r"Malformed MNIST file .*mnist\.npz: the header of array x_train "
                                         r"declares shape \(1275510204, 28, 28\)"):
        mnist.load_data()


def test_npz_reader_matches_np_load_and_refuses_impossible_members(tmp_path):
    data = synthetic(22)
    path = tmp_path / "a.npz"
    members = good_members(data)
    fortran = np.asfortranarray(np.arange(12, dtype=">i2").reshape(3, 4))
    buf = io.BytesIO()
    np.save(buf, fortran)
    members["f"] = buf.getvalue()
    path.write_bytes(npz_with(members, zipfile.ZIP_DEFLATED))
    arrays, names = _safe_io.read_npz(str(path), ["x_train", "f", "absent"], what="MNIST")
    assert names == ["f", "x_test", "x_train", "y_test", "y_train"] and sorted(arrays) == ["f", "x_train"]
    np.testing.assert_array_equal(arrays["x_train"], data[0][0])
    np.testing.assert_array_equal(arrays["f"], fortran)
    assert arrays["f"].dtype == np.dtype(">i2") and arrays["x_train"].flags.writeable

    # A central directory whose uncompressed size is more than the stored bytes can be.
    body = bytearray(npz_with({"x_train": members["x_train"]}))
    central = body.rindex(b"PK\x01\x02")
    body[central + 24:central + 28] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(body))
    with pytest.raises(ValueError, match=r"Malformed MNIST file .*a\.npz: member x_train\.npy claims 4294967280 "
                                         r"bytes, more than its \d+ stored bytes can hold"):
        _safe_io.read_npz(str(path), ["x_train"], what="MNIST")
    body[central + 20:central + 24] = struct.pack("<I", 0xFFFFFFF0)  # and as many compressed bytes
    path.write_bytes(bytes(body))
    with pytest.raises(ValueError, match=r"a\.npz: member x_train\.npy claims 4294967280 compressed bytes, "
                                         r"more than the whole file's"):
        _safe_io.read_npz(str(path), ["x_train"], what="MNIST")
    path.write_bytes(npz_with({"x_train": npy_member((2,), b"", dtype="|O")}))
    with pytest.raises(ValueError, match=r"a\.npz: array x_train holds Python objects"):
        _safe_io.read_npz(str(path), ["x_train"], what="MNIST")


@pytest.mark.parametrize("dtype", ["|V0", "<U0"])
def test_npz_array_of_zero_size_elements_names_the_file(tmp_path, dtype):
    # 10**12 elements of 0 bytes each: nothing to read, and nothing numpy can view as that dtype.
    path = tmp_path / "a.npz"
    path.write_bytes(npz_with({"x_train": npy_member((10**12,), b"", dtype=dtype)}))
    with pytest.raises(ValueError, match=r"Malformed MNIST file .*a\.npz: array x_train has elements of 0 bytes"):
        _safe_io.read_npz(str(path), ["x_train"], what="MNIST")


def test_npz_encrypted_member_names_the_file(tmp_path):
    body = bytearray(npz_with({"x_train": npy_member((4,), b"abcd")}))
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local header, central directory
        body[body.index(signature) + flags_at] |= 0x01  # general purpose bit 0: encrypted
    path = tmp_path / "a.npz"
    path.write_bytes(bytes(body))
    with pytest.raises(ValueError, match=r"Malformed MNIST file .*a\.npz: member x_train\.npy is encrypted"):
        _safe_io.read_npz(str(path), ["x_train"], what="MNIST")


# ----------------------------------------------------------------------------------- lookup order


def test_lookup_precedence_data_then_cache_then_system(env, monkeypatch):
    from_data, from_cache, from_system = synthetic(1), synthetic(2), synthetic(3)
    write_idx_folder(env / "data" / "fashion-mnist", from_data)
    write_idx_folder(env / "home" / ".lamina" / "datasets" / "fashion-mnist", from_cache)
    write_idx_folder(env / "system", from_system, compress=False)  # uncompressed copies are accepted
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", str(env / "system"))

    monkeypatch.setenv("LAMINA_DATA", str(env / "data"))
    assert_same(fashion_mnist.load_data(), from_data)
    monkeypatch.delenv("LAMINA_DATA")
    assert_same(fashion_mnist.load_data(), from_cache)
    # A LAMINA_DATA folder without this dataset is passed over, not an error.
    monkeypatch.setenv("LAMINA_DATA", str(env / "elsewhere"))
    assert_same(fashion_mnist.load_data(), from_cache)
    for name in IDX_NAMES[:1]:  # one missing file makes the cache incomplete
        os.remove(env / "home" / ".lamina" / "datasets" / "fashion-mnist" / name)
    assert_same(fashion_mnist.load_data(), from_system)


def test_lamina_data_may_point_at_the_debian_layout(env, monkeypatch):
    # LAMINA_DATA uses Debian's /usr/share/datasets/<name>/ layout, so one root serves every dataset.
    fm, mn = synthetic(4), synthetic(5)
    write_idx_folder(env / "root" / "fashion-mnist", fm)
    (env / "root" / "mnist").mkdir()
    (env / "root" / "mnist" / "mnist.npz").write_bytes(npz_bytes(mn))
    monkeypatch.setenv("LAMINA_DATA", str(env / "root"))
    assert_same(fashion_mnist.load_data(), fm)
    assert_same(mnist.load_data(), mn)


def test_nothing_found_error_lists_places_and_install_hint(env, monkeypatch, server):
    monkeypatch.setenv("LAMINA_DATA", str(env / "data"))
    monkeypatch.setenv("LAMINA_DATASETS_URL", server.url)  # serves nothing: 404
    with pytest.raises(DatasetUnavailableError) as info:
        fashion_mnist.load_data()
    msg = str(info.value)
    assert isinstance(info.value, OSError)
    assert str(env / "data" / "fashion-mnist") in msg
    assert str(env / "home" / ".lamina" / "datasets" / "fashion-mnist") in msg
    assert fashion_mnist.SYSTEM_DIR in msg
    assert f"{server.url}/train-images-idx3-ubyte.gz" in msg and "404" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "LAMINA_DATA" in msg
    assert files_in(env / "home" / ".lamina" / "datasets" / "fashion-mnist") == []
    # The 404 response that the HTTPError in the chain holds is closed, not left to the garbage
    # collector (which may finalize its socket first: a ResourceWarning in some later test).
    cause = info.value.__cause__
    while not isinstance(cause, urllib.error.HTTPError):
        cause = cause.__cause__
    assert cause.code == 404 and cause.fp.closed


def test_base_url_env_overrides_module_attribute(monkeypatch):
    monkeypatch.delenv("LAMINA_DATASETS_URL", raising=False)
    assert _files.base_url("http://a.example/x/") == "http://a.example/x/"
    monkeypatch.setenv("LAMINA_DATASETS_URL", "http://mirror.example/ds")
    assert _files.base_url("http://a.example/x/") == "http://mirror.example/ds/"


# --------------------------------------------------------------------------------------- downloads


def test_download_lands_in_cache_and_is_reused_without_server(env, monkeypatch, server, capsys):
    data = synthetic(7)
    serve_fashion(server, monkeypatch, data)
    assert_same(fashion_mnist.load_data(), data)
    cache = env / "home" / ".lamina" / "datasets" / "fashion-mnist"
    assert files_in(cache) == sorted(IDX_NAMES)  # and no leftover temporary files
    assert len(server.requests) == 4
    assert "Downloading data from" in capsys.readouterr().out

    server.stop()
    assert_same(fashion_mnist.load_data(), data)
    assert len(server.requests) == 4


@pytest.mark.parametrize("fault", ["truncated", "short-read", "tampered"])
def test_bad_download_raises_and_leaves_nothing(env, monkeypatch, server, fault):
    data = synthetic(8)
    payloads = serve_fashion(server, monkeypatch, data)
    name = "train-images-idx3-ubyte.gz"
    good = gzip.compress(payloads[name], mtime=0)
    if fault == "truncated":  # a cut-off file served with its (short) true length
        server.serve(name, good[: len(good) // 2])
        expected = "corrupt download"
    elif fault == "short-read":  # the server promises more bytes than it sends
        server.serve(name, good[:-100], length=len(good))
        expected = "incomplete download"
    else:  # a well-formed file with other data in it
        server.serve(name, gzip.compress(idx_bytes(synthetic(9)[0][0])))
        expected = "SHA-256 mismatch"
    with pytest.raises(DatasetUnavailableError, match=expected) as info:
        fashion_mnist.load_data()
    assert "apt-get install dataset-fashion-mnist" in str(info.value)
    assert files_in(env / "home" / ".lamina" / "datasets" / "fashion-mnist") == []


def test_partial_download_keeps_verified_files_and_resumes(env, monkeypatch, server):
    data = synthetic(10)
    payloads = serve_fashion(server, monkeypatch, data)
    second = IDX_NAMES[1]
    server.serve(second, b"garbage")
    with pytest.raises(DatasetUnavailableError, match=second):
        fashion_mnist.load_data()
    cache = env / "home" / ".lamina" / "datasets" / "fashion-mnist"
    assert files_in(cache) == [IDX_NAMES[0]]  # verified before the failure, so it is kept

    server.serve(second, gzip.compress(payloads[second]))
    server.requests.clear()
    assert_same(fashion_mnist.load_data(), data)
    assert sorted(server.requests) == sorted(f"/data/{n}" for n in IDX_NAMES[1:])


def test_mnist_downloads_npz_via_module_base_url(env, monkeypatch, server):
    data = synthetic(11)
    body = npz_bytes(data)
    server.serve("mnist.npz", body)
    monkeypatch.setattr(mnist, "BASE_URL", server.url + "/")
    monkeypatch.setattr(mnist, "FILE", _files.RemoteFile("mnist.npz", hashlib.sha256(body).hexdigest(), len(body)))
    assert_same(mnist.load_data(), data)
    cache = env / "home" / ".lamina" / "datasets" / "mnist"
    assert files_in(cache) == ["mnist.npz"]
    server.stop()
    assert_same(mnist.load_data(), data)


@pytest.mark.parametrize("announced", [True, False])
def test_download_stops_once_the_stream_exceeds_the_expected_size(env, monkeypatch, server, announced):
    # A mirror sends 100 MB for a file of 1000 bytes: refused before it has all been received
    # (announced: from its Content-Length, before any body is read; otherwise after 1001 bytes).
    monkeypatch.setattr(mnist, "FILE", _files.RemoteFile("mnist.npz", "0" * 64, 1000))
    monkeypatch.setenv("LAMINA_DATASETS_URL", server.url)
    total = 100 * 2**20
    server.stream("mnist.npz", bytes(2**20), 100, length=total if announced else None)
    expected = rf"the server announces {total} bytes" if announced else "the server sent more than 1000 bytes"
    with pytest.raises(DatasetUnavailableError, match=rf"larger than expected: {expected}.*at most 1000 bytes"):
        mnist.load_data()
    server.stop()  # waits for the handler, so `sent` is final
    # What the server got out before the client hung up: socket buffers, not the whole stream.
    assert server.sent["/data/mnist.npz"] < total // 2
    assert files_in(env / "home" / ".lamina" / "datasets" / "mnist") == []


def test_download_that_decompresses_past_the_expected_size_is_refused(env, monkeypatch, server):
    data = synthetic(23)
    serve_fashion(server, monkeypatch, data)
    name = IDX_NAMES[1]
    # A 3 KB gzip file (under the 4109-byte download cap) that inflates to 3 MB instead of 13 bytes.
    server.serve(name, gzip.compress(idx_payloads(data)[name] + bytes(3 * 2**20)))
    with pytest.raises(DatasetUnavailableError, match=rf"{name}: the decompressed data exceeds the expected 13 bytes"):
        fashion_mnist.load_data()
    assert files_in(env / "home" / ".lamina" / "datasets" / "fashion-mnist") == [IDX_NAMES[0]]


def test_expected_download_sizes():
    # The sizes the caps derive from: the IDX data (header + one byte per pixel or label), and
    # Keras's mnist.npz.
    assert [f.size for f in fashion_mnist.FILES] == [47_040_016, 60_008, 7_840_016, 10_008]
    assert mnist.FILE.size == 11_490_434 and not mnist.FILE.gunzip
    assert mnist.FILE.max_download_bytes == 11_490_434
    assert fashion_mnist.FILES[0].size < fashion_mnist.FILES[0].max_download_bytes < 47_200_000


def test_mnist_tampered_download_raises_and_leaves_nothing(env, monkeypatch, server):
    server.serve("mnist.npz", npz_bytes(synthetic(12)))
    monkeypatch.setenv("LAMINA_DATASETS_URL", server.url)
    # The real Keras hash stays expected, so any other file is rejected.
    with pytest.raises(DatasetUnavailableError, match="SHA-256 mismatch") as info:
        mnist.load_data()
    assert "$LAMINA_DATA: not set" in str(info.value)
    assert files_in(env / "home" / ".lamina" / "datasets" / "mnist") == []


def test_mnist_reads_idx_files_from_lamina_data(env, monkeypatch):
    data = synthetic(13)
    write_idx_folder(env / "data" / "mnist", data)
    monkeypatch.setenv("LAMINA_DATA", str(env / "data"))
    assert_same(mnist.load_data(), data)


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"not an archive", "not a readable .npz"),
        (npz_bytes(synthetic(14), y_test=None), "expected the arrays"),
        (npz_bytes(synthetic(14), y_train=np.zeros(5, np.int64)), "expected uint8 x_train"),
        (npz_bytes(synthetic(14), x_test=np.zeros((3, 28, 27), np.uint8)), "Received: x_test uint8"),
    ],
)
def test_mnist_malformed_npz_names_the_file(env, monkeypatch, body, expected):
    (env / "data" / "mnist").mkdir(parents=True)
    (env / "data" / "mnist" / "mnist.npz").write_bytes(body)
    monkeypatch.setenv("LAMINA_DATA", str(env / "data"))
    with pytest.raises(ValueError, match=rf"Malformed MNIST file .*mnist\.npz.*{expected}"):
        mnist.load_data()


def test_mnist_hash_is_the_one_keras_checks():
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("Keras is not installed")
    source = os.path.join(spec.submodule_search_locations[0], "src", "datasets", "mnist.py")
    with open(source) as f:
        assert mnist.FILE.sha256 in f.read()


# ------------------------------------------------------------------------- the real Debian package


@pytest.mark.skipif(not os.path.isdir(DEBIAN_DIR), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_debian(env, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", DEBIAN_DIR)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    # Balanced classes 0..9: 6000 per class in training, 1000 in test.
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), np.full(10, 1000))
    # The widely used normalisation constants of Fashion-MNIST's training images: mean 0.2860,
    # std 0.3530 (pixels scaled to [0, 1]).
    scaled = x_train.astype(np.float64) / 255.0
    assert abs(scaled.mean() - 0.2860) < 5e-5
    assert abs(scaled.std() - 0.3530) < 5e-5
    assert y_train[0] == 9  # the first training image is the well-known ankle boot


@pytest.mark.skipif(not os.path.isdir(DEBIAN_DIR), reason="apt-get install dataset-fashion-mnist")
def test_download_hashes_match_the_debian_data():
    # The constants a download is checked against are the hashes of the data Debian ships.
    for remote in fashion_mnist.FILES:
        assert remote.gunzip
        assert _files._sha256_of(os.path.join(DEBIAN_DIR, remote.name), gunzip=True) == remote.sha256


# ------------------------------------------------------------------------------------ make_circles


def test_make_circles_geometry_without_noise():
    x, y = make_circles(n_samples=101, factor=0.3, seed=0)
    assert x.shape == (101, 2) and x.dtype == np.float32
    assert y.shape == (101,) and y.dtype == np.int64
    assert (y == 0).sum() == 50 and (y == 1).sum() == 51  # outer gets n // 2, inner the rest
    radius = np.linalg.norm(x.astype(np.float64), axis=1)
    np.testing.assert_allclose(radius[y == 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(radius[y == 1], 0.3, atol=1e-6)
    # Equally spaced angles 2*pi*k/m on each circle.
    for label, m in ((0, 50), (1, 51)):
        pts = x[y == label].astype(np.float64)
        angles = np.sort(np.mod(np.arctan2(pts[:, 1], pts[:, 0]), 2 * np.pi))
        angles[np.isclose(angles, 2 * np.pi, atol=1e-6)] = 0.0
        np.testing.assert_allclose(np.sort(angles), 2 * np.pi * np.arange(m) / m, atol=1e-5)
    assert not np.all(np.diff(y) >= 0)  # shuffled, not outer-then-inner


def test_make_circles_noise_has_requested_std():
    x, y = make_circles(n_samples=20000, noise=0.05, factor=0.5, seed=3)
    clean, clean_y = make_circles(n_samples=20000, factor=0.5, seed=3)
    # Same seed, same shuffle: the difference is exactly the added noise.
    np.testing.assert_array_equal(y, clean_y)
    residual = (x - clean).astype(np.float64)
    assert abs(residual.std() - 0.05) < 2e-3
    assert abs(residual.mean()) < 2e-3


def test_make_circles_seeding():
    a = make_circles(50, noise=0.1, seed=42)
    b = make_circles(50, noise=0.1, seed=42)
    c = make_circles(50, noise=0.1, seed=43)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # seed=None draws from lamina's global generator, which set_random_seed resets.
    lamina.utils.set_random_seed(5)
    d = make_circles(50, noise=0.1)
    lamina.utils.set_random_seed(5)
    e = make_circles(50, noise=0.1)
    np.testing.assert_array_equal(d[0], e[0])


def test_make_circles_smallest_case():
    x, y = make_circles(2, seed=0)
    assert sorted(y.tolist()) == [0, 1]
    np.testing.assert_allclose(np.sort(np.linalg.norm(x, axis=1)), [0.8, 1.0], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n_samples": 1}, "n_samples"),
        ({"n_samples": 10.0}, "n_samples"),
        ({"n_samples": True}, "n_samples"),
        ({"factor": 0.0}, "factor"),
        ({"factor": 1.0}, "factor"),
        ({"factor": 1.5}, "factor"),
        ({"factor": "0.5"}, "factor"),
        ({"noise": -0.1}, "noise"),
        ({"noise": float("nan")}, "noise"),
    ],
)
def test_make_circles_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        make_circles(**kwargs)


def test_public_names():
    assert lamina.datasets.circles is circles
    assert circles.make_circles is make_circles
    assert callable(lamina.datasets.fashion_mnist.load_data)
    assert callable(lamina.datasets.mnist.load_data)
