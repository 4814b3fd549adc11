"The downloader against a real HTTP server on loopback: failures leave nothing half-written in the cache."

import http.server
import threading

import numpy as np
import pytest

from sgm_nb.data import DownloadError, Resource, download, load_dataset, md5sum, read_idx, write_idx


class _Handler(http.server.BaseHTTPRequestHandler):
    "Serves /good (whole file), /truncated (promises more bytes than it sends) and 404 for anything else."

    payload = b""

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path not in ("/good", "/truncated"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload) + (1000 if self.path == "/truncated" else 0)))
        self.end_headers()
        self.wfile.write(self.payload)
        if self.path == "/truncated":
            self.close_connection = True


@pytest.fixture
def server(tmp_path):
    f = tmp_path / "labels.gz"
    write_idx(f, np.arange(10, dtype=np.uint8))
    handler = type("H", (_Handler,), {"payload": f.read_bytes()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", md5sum(f)
    httpd.shutdown()
    httpd.server_close()


def test_download_over_http(server, tmp_path):
    url, md5 = server
    p = download(Resource("labels.gz", md5, (url + "/good",)), tmp_path / "cache")
    np.testing.assert_array_equal(read_idx(p), np.arange(10))


def test_falls_back_to_the_next_mirror(server, tmp_path):
    url, md5 = server
    p = download(Resource("labels.gz", md5, (url + "/missing", url + "/good")), tmp_path / "cache")
    assert md5sum(p) == md5


def test_truncated_download_leaves_nothing(server, tmp_path):
    url, md5 = server
    with pytest.raises(DownloadError) as e:
        download(Resource("labels.gz", md5, (url + "/truncated",)), tmp_path / "cache", timeout=5)
    assert "cannot download labels.gz" in str(e.value) and "\n" not in str(e.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_http_404_names_the_url(server, tmp_path):
    url, md5 = server
    with pytest.raises(DownloadError, match="/missing"):
        download(Resource("labels.gz", md5, (url + "/missing",)), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_corrupt_cached_file_is_replaced(server, tmp_path):
    url, md5 = server
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "labels.gz").write_bytes(b"garbage from an old, broken run")
    p = download(Resource("labels.gz", md5, (url + "/good",)), cache)
    assert md5sum(p) == md5


def test_offline_without_download_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", "train", root=tmp_path, download_missing=False)


def test_read_idx_rejects_other_files(tmp_path):
    (tmp_path / "x").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "x")
