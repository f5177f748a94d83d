"""Download Fashion-MNIST, MNIST and CIFAR-10 with SHA-256 checks, resumable transfers and atomic writes.

Each file is fetched into ``<name>.part`` (continued with an HTTP ``Range`` request when a ``.part`` already
exists), checked against its SHA-256, and only then renamed to its final name, so a final file is always a
verified one. The CIFAR-10 archive is unpacked, member by member and refusing anything but plain files inside
the target folder, into ``<dest>/cifar-10-batches-py``. Only ``urllib`` is used; nothing happens at import.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from pruneguard.errors import ConfigError, PruneGuardError, UnknownNameError
from pruneguard.utils.io import sha256_file
from pruneguard.utils.progress import track

__all__ = [
    "SOURCES",
    "DatasetSource",
    "DownloadError",
    "RemoteFile",
    "default_dest",
    "download_dataset",
    "extract_cifar_archive",
]


class DownloadError(PruneGuardError):
    """The network failed (unreachable host, HTTP error, timeout): a runtime failure, exit 1, not bad input."""

    exit_code = 1


logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
_USER_AGENT = "pruneguard-downloader/0.1 (+urllib)"
_CIFAR_DIR = "cifar-10-batches-py"
_MAX_EXTRACT_BYTES = 1 << 30  # the real CIFAR-10 archive unpacks to ~180 MB; refuse tar bombs


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One file of a dataset: its name on the server, its SHA-256 and (if known) its size in bytes."""

    name: str
    sha256: str
    size: int | None = None

    def __post_init__(self) -> None:
        if "/" in self.name or "\\" in self.name or self.name in ("", ".", ".."):
            raise ConfigError(f"file name={self.name!r} must be a plain file name without folders")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ConfigError(f"sha256={self.sha256!r} for {self.name} is not 64 lower-case hex digits")


@dataclass(frozen=True, slots=True)
class DatasetSource:
    """Where a dataset is downloaded from: mirrors tried in order, the files, and whether to unpack CIFAR."""

    base_urls: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    extract_cifar: bool = False


# SHA-256 values as published in tensorflow/datasets url_checksums and torchvision's prototype MNIST builders;
# the MNIST mirrors serve the original LeCun files (torchvision checks them against the same MD5 sums).
SOURCES: dict[str, DatasetSource] = {
    "fashion_mnist": DatasetSource(
        base_urls=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        files=(
            RemoteFile(
                "train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                26421880,
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                29515,
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                4422102,
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                5148,
            ),
        ),
    ),
    "mnist": DatasetSource(
        base_urls=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        files=(
            RemoteFile(
                "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                9912422,
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                28881,
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                1648877,
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                4542,
            ),
        ),
    ),
    "cifar10": DatasetSource(
        base_urls=("https://www.cs.toronto.edu/~kriz/",),
        files=(
            RemoteFile(
                "cifar-10-python.tar.gz",
                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                170498071,
            ),
        ),
        extract_cifar=True,
    ),
}


class _NetworkError(Exception):
    """A transfer failed (connection, HTTP status, timeout); the next mirror may still work."""


def default_dest(name: str) -> Path:
    """The folder a dataset is downloaded to by default: ``~/.cache/pruneguard/<name>``."""
    return Path.home() / ".cache" / "pruneguard" / name


def download_dataset(
    name: str,
    dest: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    files: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    progress: bool = False,
) -> Path:
    """Download dataset ``name`` into ``dest`` and verify every file; return the folder.

    Files already present with the right SHA-256 are kept; an interrupted run's ``.part`` is continued.

    Args:
        name: a key of ``SOURCES`` (``"fashion_mnist"``, ``"mnist"``, ``"cifar10"``).
        dest: target folder; defaults to ``~/.cache/pruneguard/<name>`` (searched by ``load_dataset``).
        base_url: one ``http(s)://`` folder URL used instead of the built-in mirrors.
        files: ``{file name: sha256}`` replacing the built-in file table (for a mirror with other files).
        timeout: socket timeout in seconds per request.
        progress: show a progress bar per file.

    Raises:
        UnknownNameError: ``name`` is not in ``SOURCES``.
        ConfigError: a bad argument, a network failure (one line) or a SHA-256 mismatch (no final file).

    Example:
        >>> folder = download_dataset("fashion_mnist")
        >>> train = load_dataset("fashion_mnist", "train", data_dir=folder)
    """
    source = _source(name)
    if not timeout > 0:
        raise ConfigError(f"timeout={timeout} must be a positive number of seconds")
    urls = source.base_urls if base_url is None else (_check_base_url(base_url),)
    table = source.files if files is None else tuple(RemoteFile(n, str(h).lower()) for n, h in files.items())
    if not table:
        raise ConfigError("files={} names no file to download; pass {file name: sha256}")
    folder = (default_dest(name) if dest is None else Path(dest)).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"dest={str(folder)!r} cannot be used as a download folder: {exc}") from None
    fetched = [_download_file(urls, folder, f, timeout=timeout, progress=progress) for f in table]
    if source.extract_cifar:
        for archive, fresh in zip(table, fetched, strict=True):
            if archive.name.endswith((".tar.gz", ".tgz")) and (fresh or not (folder / _CIFAR_DIR).is_dir()):
                extract_cifar_archive(folder / archive.name, folder)
    logger.info("dataset %s is ready in %s", name, folder)
    return folder


def _source(name: str) -> DatasetSource:
    if name in SOURCES:
        return SOURCES[name]
    close = difflib.get_close_matches(str(name), list(SOURCES), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(f"no download source for dataset {name!r}; accepted: {', '.join(SOURCES)}{hint}")


def _check_base_url(base_url: str) -> str:
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url={base_url!r} is not an http:// or https:// URL")
    return base_url if base_url.endswith("/") else base_url + "/"


def _download_file(urls: tuple[str, ...], folder: Path, remote: RemoteFile, *, timeout: float, progress: bool) -> bool:
    """Make ``folder/remote.name`` a verified copy; return True when it was (re)downloaded now."""
    final = folder / remote.name
    if final.is_file():
        if sha256_file(final) == remote.sha256:
            logger.info("%s is present and verified", final)
            return False
        logger.warning("%s exists but its SHA-256 differs; deleting it and downloading it again", final)
        final.unlink()
    part = final.with_name(final.name + ".part")
    failures: list[str] = []
    for base in urls:
        url = base + remote.name
        try:
            resumed = _fetch(url, part, remote, timeout=timeout, progress=progress)
            actual = sha256_file(part)
            if actual != remote.sha256 and resumed:
                logger.warning("%s does not verify after resuming; downloading it from the start", remote.name)
                part.unlink()
                _fetch(url, part, remote, timeout=timeout, progress=progress)
                actual = sha256_file(part)
        except _NetworkError as exc:
            failures.append(f"{url}: {' '.join(str(exc).split())}")
            logger.warning("download from %s failed: %s", url, exc)
            continue
        if actual != remote.sha256:
            part.unlink(missing_ok=True)
            raise ConfigError(
                f"SHA-256 mismatch for {remote.name} from {url}: expected {remote.sha256}, got {actual}; "
                "the download was deleted"
            )
        os.replace(part, final)
        logger.info("downloaded and verified %s", final)
        return True
    raise DownloadError(f"could not download {remote.name}: {'; '.join(failures)}")


def _fetch(url: str, part: Path, remote: RemoteFile, *, timeout: float, progress: bool) -> bool:
    """Fetch ``url`` into ``part``, continuing an existing ``part``; return True when it resumed."""
    offset = part.stat().st_size if part.is_file() else 0
    if remote.size is not None and offset > remote.size:
        part.unlink()
        offset = 0
    if remote.size is not None and 0 < offset == remote.size:
        return True  # complete already; the caller verifies it
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with contextlib.closing(
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        ) as resp:
            status = resp.status
            resumed = bool(offset) and status == 206 and _range_start(resp.headers.get("Content-Range")) == offset
            if status == 206 and not resumed:  # a part we did not ask for: start again without Range
                if not offset:
                    raise _NetworkError("the server sent a partial response to a plain request")
                resp.close()
                part.unlink()
                return _fetch(url, part, remote, timeout=timeout, progress=progress)
            if offset and not resumed:
                logger.info("server did not continue %s at byte %d; restarting it", url, offset)
            _copy(resp, part, append=resumed, desc=remote.name, total=remote.size, progress=progress)
            return resumed
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part is complete (or stale)
            return True
        raise _NetworkError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _NetworkError(str(exc.reason)) from None
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed responses
        raise _NetworkError(f"{type(exc).__name__}: {exc}") from None


def _range_start(content_range: str | None) -> int | None:
    """The first byte of a ``Content-Range: bytes a-b/n`` header, or None."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    first = content_range[6:].split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _copy(resp: IO[bytes], part: Path, *, append: bool, desc: str, total: int | None, progress: bool) -> None:
    with open(part, "ab" if append else "wb") as fh:
        for block in track(
            _chunks(resp), desc=desc, enabled=progress, total=None if total is None else -(-total // _CHUNK)
        ):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())


def _chunks(resp: IO[bytes]) -> Iterator[bytes]:
    while block := resp.read(_CHUNK):
        yield block


def extract_cifar_archive(archive: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """Unpack a CIFAR-10 python archive into ``folder/cifar-10-batches-py``, refusing unsafe members.

    Members with absolute paths, ``..`` components, links, devices or anything but regular files and folders
    raise ``ConfigError`` and leave the target untouched; files land in a temporary folder first.
    """
    folder = Path(folder)
    target = folder / _CIFAR_DIR
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cifar-extract-", dir=folder))
    try:
        _extract_members(Path(archive), staging)
        inner = staging / _CIFAR_DIR
        if not (inner / "test_batch").is_file():
            raise ConfigError(f"archive {archive} holds no {_CIFAR_DIR}/test_batch; it is not CIFAR-10 (python)")
        if target.exists():
            shutil.rmtree(target)
        os.replace(inner, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("extracted %s into %s", archive, target)
    return target


def _extract_members(archive: Path, staging: Path) -> None:
    written = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                rel = _safe_member_path(member, archive)
                if rel is None:
                    continue
                if member.isdir():
                    (staging / rel).mkdir(parents=True, exist_ok=True)
                    continue
                written += member.size
                if written > _MAX_EXTRACT_BYTES:
                    raise ConfigError(f"archive {archive} unpacks to more than {_MAX_EXTRACT_BYTES} bytes; refused")
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is None:
                    raise ConfigError(f"archive {archive}: member {member.name!r} could not be read")
                with src, open(staging / rel, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ConfigError(f"archive {archive} could not be unpacked: {exc}") from None


def _safe_member_path(member: tarfile.TarInfo, archive: Path) -> PurePosixPath | None:
    """The member's relative path, None for a bare ``.`` folder; ``ConfigError`` for anything unsafe."""
    name = member.name
    rel = PurePosixPath(name)
    if (
        name.startswith(("/", "\\"))
        or rel.is_absolute()
        or ".." in rel.parts
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")
    ):
        raise ConfigError(f"archive {archive}: member {name!r} points outside the target folder; refused")
    if not (member.isfile() or member.isdir()):
        raise ConfigError(f"archive {archive}: member {name!r} is not a regular file (link or device); refused")
    if not rel.parts:
        if member.isdir():
            return None
        raise ConfigError(f"archive {archive}: member {name!r} has an empty name; refused")
    return rel
