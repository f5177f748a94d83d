"""Downloader against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from pruneguard.cli.app import main
from pruneguard.data import load_dataset
from pruneguard.data.download import SOURCES, DownloadError, download_dataset, extract_cifar_archive
from pruneguard.errors import ConfigError, UnknownNameError

_PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@dataclass
class _Site:
    """What the local server serves and what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    honor_range: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    base_url: str = ""


class _Handler(BaseHTTPRequestHandler):
    site: _Site

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        site = self.server.site  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        site.requests.append((self.path, rng))
        body = site.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng and site.honor_range else 0
        if start >= len(body) and start:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        pass


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Site]:
    for var in _PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    state = _Site(base_url=f"http://127.0.0.1:{server.server_address[1]}/")
    server.site = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _payload(n: int = 10_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8).tobytes()


def _tar_gz(members: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info in extra or []:
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _cifar_members(cifar_batch_bytes) -> tuple[dict[str, bytes], np.ndarray]:
    members = {}
    for i in range(1, 6):
        members[f"cifar-10-batches-py/data_batch_{i}"] = cifar_batch_bytes(3, seed=i)[0]
    raw, data, _ = cifar_batch_bytes(2, seed=99)
    members["cifar-10-batches-py/test_batch"] = raw
    members["cifar-10-batches-py/batches.meta"] = b"meta"
    return members, data


def test_download_and_verify(site: _Site, tmp_path: Path) -> None:
    body = _payload()
    site.files["blob.bin"] = body
    out = download_dataset("mnist", tmp_path / "d", base_url=site.base_url, files={"blob.bin": _sha(body)}, timeout=5)
    assert out == tmp_path / "d"
    assert (out / "blob.bin").read_bytes() == body
    assert not (out / "blob.bin.part").exists()
    assert site.requests == [("/blob.bin", None)]


def test_verified_file_is_not_downloaded_again(site: _Site, tmp_path: Path) -> None:
    body = _payload()
    site.files["blob.bin"] = body
    kwargs = {"base_url": site.base_url, "files": {"blob.bin": _sha(body)}, "timeout": 5}
    download_dataset("mnist", tmp_path, **kwargs)
    download_dataset("mnist", tmp_path, **kwargs)
    assert len(site.requests) == 1


def test_corrupt_existing_file_is_replaced(site: _Site, tmp_path: Path) -> None:
    body = _payload()
    site.files["blob.bin"] = body
    (tmp_path / "blob.bin").write_bytes(b"stale")
    download_dataset("mnist", tmp_path, base_url=site.base_url, files={"blob.bin": _sha(body)}, timeout=5)
    assert (tmp_path / "blob.bin").read_bytes() == body


def test_idx_download_then_load(site: _Site, tmp_path: Path, make_idx_dataset) -> None:
    arrays = make_idx_dataset(tmp_path / "served", n_train=6, n_test=3)
    files = {}
    for path in (tmp_path / "served").iterdir():
        site.files[path.name] = path.read_bytes()
        files[path.name] = _sha(path.read_bytes())
    out = download_dataset("fashion_mnist", tmp_path / "fm", base_url=site.base_url, files=files, timeout=5)
    data = load_dataset("fashion_mnist", "test", data_dir=out)
    np.testing.assert_array_equal(data.x[:, 0].numpy(), arrays["test"][0])


def test_hash_mismatch_raises_and_leaves_no_file(site: _Site, tmp_path: Path) -> None:
    site.files["blob.bin"] = _payload()
    wrong = "0" * 64
    with pytest.raises(ConfigError) as info:
        download_dataset("mnist", tmp_path, base_url=site.base_url, files={"blob.bin": wrong}, timeout=5)
    message = str(info.value)
    assert "blob.bin" in message and wrong in message and _sha(site.files["blob.bin"]) in message
    assert not (tmp_path / "blob.bin").exists()
    assert not (tmp_path / "blob.bin.part").exists()


def test_resume_sends_range_and_verifies(site: _Site, tmp_path: Path) -> None:
    body = _payload(10_000)
    site.files["blob.bin"] = body
    (tmp_path / "blob.bin.part").write_bytes(body[:5000])
    download_dataset("mnist", tmp_path, base_url=site.base_url, files={"blob.bin": _sha(body)}, timeout=5)
    assert site.requests == [("/blob.bin", "bytes=5000-")]
    assert (tmp_path / "blob.bin").read_bytes() == body
    assert not (tmp_path / "blob.bin.part").exists()


def test_server_ignoring_range_restarts_cleanly(site: _Site, tmp_path: Path) -> None:
    body = _payload(10_000)
    site.files["blob.bin"] = body
    site.honor_range = False
    (tmp_path / "blob.bin.part").write_bytes(body[:5000])
    download_dataset("mnist", tmp_path, base_url=site.base_url, files={"blob.bin": _sha(body)}, timeout=5)
    assert site.requests == [("/blob.bin", "bytes=5000-")]
    assert (tmp_path / "blob.bin").read_bytes() == body  # not 5000 + 10000 bytes


def test_stale_part_is_discarded_after_a_failed_resume(site: _Site, tmp_path: Path) -> None:
    body = _payload(10_000)
    site.files["blob.bin"] = body
    (tmp_path / "blob.bin.part").write_bytes(b"\x00" * 5000)  # not the file's first half
    download_dataset("mnist", tmp_path, base_url=site.base_url, files={"blob.bin": _sha(body)}, timeout=5)
    assert site.requests == [("/blob.bin", "bytes=5000-"), ("/blob.bin", None)]
    assert (tmp_path / "blob.bin").read_bytes() == body


def test_complete_part_gets_416_and_verifies(site: _Site, tmp_path: Path) -> None:
    body = _payload(4000)
    site.files["blob.bin"] = body
    (tmp_path / "blob.bin.part").write_bytes(body)
    download_dataset("mnist", tmp_path, base_url=site.base_url, files={"blob.bin": _sha(body)}, timeout=5)
    assert site.requests == [("/blob.bin", "bytes=4000-")]
    assert (tmp_path / "blob.bin").read_bytes() == body


def test_http_error_is_a_one_line_runtime_error(site: _Site, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download_dataset("mnist", tmp_path, base_url=site.base_url, files={"absent.bin": "a" * 64}, timeout=5)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "absent.bin").exists()


def test_connection_refused_is_a_one_line_runtime_error_exit_1(tmp_path: Path, monkeypatch) -> None:
    for var in _PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="could not download blob.bin") as info:
        download_dataset(
            "mnist", tmp_path, base_url=f"http://127.0.0.1:{port}", files={"blob.bin": "a" * 64}, timeout=5
        )
    assert "\n" not in str(info.value) and not isinstance(info.value, ConfigError)
    assert main(["download", "mnist", "--dest", str(tmp_path / "d"), "--base-url", f"http://127.0.0.1:{port}/"]) == 1


def test_cifar_archive_is_extracted_and_loads(site: _Site, tmp_path: Path, cifar_batch_bytes) -> None:
    members, test_data = _cifar_members(cifar_batch_bytes)
    archive = _tar_gz(members, extra=[_dir_info("cifar-10-batches-py")])
    site.files["cifar-10-python.tar.gz"] = archive
    out = download_dataset(
        "cifar10",
        tmp_path / "c",
        base_url=site.base_url,
        files={"cifar-10-python.tar.gz": _sha(archive)},
        timeout=5,
    )
    assert sorted(p.name for p in (out / "cifar-10-batches-py").iterdir()) == sorted(
        name.split("/")[1] for name in members
    )
    assert not [p for p in out.iterdir() if p.name.startswith(".cifar-extract-")]
    test = load_dataset("cifar10", "test", data_dir=out)
    np.testing.assert_array_equal(test.x.reshape(2, -1).numpy(), test_data)
    assert len(load_dataset("cifar10", "train", data_dir=out)) == 15


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def _link_info(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_tar_with_parent_member_is_refused(site: _Site, tmp_path: Path, cifar_batch_bytes) -> None:
    members, _ = _cifar_members(cifar_batch_bytes)
    members["../evil"] = b"evil"
    archive = _tar_gz(members)
    site.files["cifar-10-python.tar.gz"] = archive
    dest = tmp_path / "c"
    with pytest.raises(ConfigError, match=r"\.\./evil"):
        download_dataset(
            "cifar10",
            dest,
            base_url=site.base_url,
            files={"cifar-10-python.tar.gz": _sha(archive)},
            timeout=5,
        )
    assert not (tmp_path / "evil").exists()
    assert not (dest / "cifar-10-batches-py").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".cifar-extract-")]


@pytest.mark.parametrize(
    "bad",
    [
        "/tmp/abs_evil",
        "cifar-10-batches-py/../../evil",
        _link_info("cifar-10-batches-py/link", "/etc/passwd", tarfile.SYMTYPE),
        _link_info("cifar-10-batches-py/hard", "/etc/passwd", tarfile.LNKTYPE),
    ],
    ids=["absolute", "dotdot", "symlink", "hardlink"],
)
def test_unsafe_members_are_refused(tmp_path: Path, cifar_batch_bytes, bad: str | tarfile.TarInfo) -> None:
    members, _ = _cifar_members(cifar_batch_bytes)
    extra = []
    if isinstance(bad, str):
        members[bad] = b"evil"
    else:
        extra.append(bad)
    (tmp_path / "a.tar.gz").write_bytes(_tar_gz(members, extra))
    with pytest.raises(ConfigError, match="refused"):
        extract_cifar_archive(tmp_path / "a.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out" / "cifar-10-batches-py").exists()
    assert not (tmp_path / "evil").exists()


def test_archive_without_cifar_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.tar.gz").write_bytes(_tar_gz({"other/readme.txt": b"hi"}))
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match="test_batch"):
        extract_cifar_archive(tmp_path / "a.tar.gz", tmp_path / "out")


def test_corrupt_archive_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "a.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match="could not be unpacked"):
        extract_cifar_archive(tmp_path / "a.tar.gz", tmp_path / "out")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="cifar10"):
        download_dataset("cifar_10", tmp_path)
    with pytest.raises(ConfigError, match="base_url"):
        download_dataset("mnist", tmp_path, base_url="file:///etc/")
    with pytest.raises(ConfigError, match="timeout"):
        download_dataset("mnist", tmp_path, timeout=0)
    with pytest.raises(ConfigError, match="sha256"):
        download_dataset("mnist", tmp_path, base_url="http://127.0.0.1:9/", files={"a.bin": "nothex"})
    with pytest.raises(ConfigError, match="plain file name"):
        download_dataset("mnist", tmp_path, base_url="http://127.0.0.1:9/", files={"../a.bin": "a" * 64})


def test_sources_table_matches_the_loaders() -> None:
    assert set(SOURCES) == {"fashion_mnist", "mnist", "cifar10"}
    idx_names = {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }
    for name in ("fashion_mnist", "mnist"):
        assert {f.name for f in SOURCES[name].files} == idx_names
    assert [f.name for f in SOURCES["cifar10"].files] == ["cifar-10-python.tar.gz"]
    assert SOURCES["cifar10"].extract_cifar
    for source in SOURCES.values():
        assert source.base_urls and all(
            u.startswith(("http://", "https://")) and u.endswith("/") for u in source.base_urls
        )
        assert all(len(f.sha256) == 64 and f.size for f in source.files)
    assert len({f.sha256 for s in SOURCES.values() for f in s.files}) == 9
