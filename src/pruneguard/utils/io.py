"""File helpers: atomic writes, hashing, safe output paths."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pruneguard.errors import ConfigError, PruneGuardError

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "json_default",
    "sha256_file",
    "sha256_bytes",
    "check_output_path",
    "check_out_folder",
    "output_folder",
    "remove_own_folder",
    "MARKER_NAME",
]

MARKER_NAME = ".pruneguard-run"
_MARKER_TEXT = "This folder was created by pruneguard; pruneguard may replace it when asked to (--overwrite).\n"
_PREVIOUS_SUFFIX = ".pruneguard-previous"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; results are ordinary files
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    """``json.dumps``' ``default``: paths as text, tensors and arrays as lists."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_output_path(out: Path, *, inputs: list[Path], param: str = "--out") -> None:
    """Refuse an output path that is one of the input files (inputs are never overwritten)."""
    out_r = out.expanduser().resolve()
    for p in inputs:
        if out_r == p.expanduser().resolve():
            raise ConfigError(
                f"{param}={out} is the input file {p}; choose another path (inputs are never overwritten)"
            )


def _resolved(p: Path) -> Path:
    return Path(os.path.abspath(p.expanduser())).resolve()


def check_out_folder(out: Path, *, inputs: Iterable[Path] = (), param: str = "--out") -> None:
    """Refuse an output folder pruneguard could not safely create, fill or replace; one ``ConfigError`` line.

    Refused: an empty path or the current folder, a parent of the current folder, a symbolic link (replacing it
    would act on its target), an existing file, a path that contains one of the ``inputs`` (or lies inside an
    input folder), and a path whose nearest existing parent is not a folder.
    """
    if str(out).strip() == "" or os.path.normpath(str(out)) == ".":
        raise ConfigError(f"{param}={str(out)!r} is the current folder; accepted: a new or pruneguard-made folder")
    try:
        cwd = Path.cwd().resolve()
    except FileNotFoundError:  # the shell's folder was deleted under it
        raise ConfigError(f"{param}={out}: the current folder no longer exists; give a path from a real one") from None
    out_r = _resolved(out)
    if out_r == cwd or out_r in cwd.parents:
        raise ConfigError(f"{param}={out} is the current folder or one of its parents; accepted: a folder below it")
    if out.is_symlink():
        raise ConfigError(f"{param}={out} is a symbolic link; accepted: a real folder or a path that does not exist")
    for p in inputs:
        p_r = _resolved(Path(p))
        if out_r == p_r or out_r in p_r.parents or (p_r.is_dir() and p_r in out_r.parents):
            raise ConfigError(f"{param}={out} contains or lies inside the input {p}; inputs are never touched")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{param}={out} exists and is not a folder")
    parent = out_r.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{param}={out} cannot be created: {parent} is not a folder")


def _is_marked(folder: Path) -> bool:
    return not folder.is_symlink() and (folder / MARKER_NAME).is_file() and not (folder / MARKER_NAME).is_symlink()


def remove_own_folder(folder: Path) -> None:
    """Delete a folder pruneguard made (it holds the marker file); symbolic links inside are unlinked, never
    followed. A folder without the marker is refused with ``ConfigError``."""
    if not _is_marked(folder):
        raise ConfigError(f"{folder} was not created by pruneguard (no {MARKER_NAME} file); it is not removed")
    shutil.rmtree(folder)  # rmtree unlinks symlinks and never descends into them


def _make_folder(out: Path, param: str) -> list[Path]:
    """Create ``out`` (and parents) with the marker file (kept where there is one); return the folders created
    here, ``out`` first."""
    made = [out] if not out.exists() else []
    parent = out.parent
    while made and not parent.exists():
        made.append(parent)
        parent = parent.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not _is_marked(out):  # a run's own marker is left as it is: bad input must change nothing there
            (out / MARKER_NAME).write_text(_MARKER_TEXT)
    except OSError as exc:
        raise ConfigError(f"{param}={out} cannot be created: {exc.strerror or type(exc).__name__}") from None
    return made


def _only_marker(folder: Path) -> bool:
    return folder.is_dir() and all(p.name == MARKER_NAME for p in folder.iterdir())


@contextlib.contextmanager
def output_folder(
    out: Path,
    *,
    overwrite: bool,
    resume: bool = False,
    inputs: Iterable[Path] = (),
    param: str = "--out",
) -> Iterator[Path]:
    """The output folder of one job, made safe to fill and to replace; yields the folder to write into.

    * An existing non-empty folder is refused unless ``resume`` (the job continues in it; it must be a folder
      pruneguard made) or ``overwrite``.
    * ``overwrite`` only ever replaces a folder pruneguard made (it holds the ``.pruneguard-run`` marker). The old
      run is renamed to the hidden sibling ``.NAME.pruneguard-previous`` (a rename: nothing is deleted), the new
      run is built in a fresh ``out``, and the old run is deleted only when the job has finished. If the job fails
      the new folder is removed and the old one renamed back, so a failed ``--overwrite`` changes nothing. A killed
      job leaves the new run in ``out`` (``--resume`` continues it) and the old one in the sibling, deleted when a
      later run in ``out`` finishes.
    * A folder made by this call is removed again when the job fails on bad input (exit 2 writes nothing) or
      leaves nothing but the marker; otherwise a failed job's files stay for ``--resume``.
    """
    out = Path(out)
    check_out_folder(out, inputs=inputs, param=param)
    previous = out.parent / f".{out.name}{_PREVIOUS_SUFFIX}"
    if previous.is_symlink() or (previous.exists() and not _is_marked(previous)):
        raise ConfigError(f"{param}={out}: {previous} exists and was not created by pruneguard; move it away")
    moved = False
    if resume and out.is_dir() and any(out.iterdir()) and not _is_marked(out):
        raise ConfigError(
            f"{param}={out} was not created by pruneguard (no {MARKER_NAME} file); there is no run to resume in it"
        )
    if out.is_dir() and any(out.iterdir()) and not resume:
        if not overwrite:
            raise ConfigError(f"{param}={out} already holds a run; pass --overwrite to replace it or --resume")
        if not _is_marked(out):
            raise ConfigError(
                f"{param}={out} is not empty and was not created by pruneguard (no {MARKER_NAME} file); "
                "refusing to replace it"
            )
        if previous.exists():  # a killed replacement: ``previous`` is the last finished run, ``out`` unfinished
            remove_own_folder(out)
        else:
            os.rename(out, previous)
            moved = True
    try:
        made = _make_folder(out, param)
    except BaseException:
        if moved:  # put the old run back where it was
            with contextlib.suppress(OSError):
                out.rmdir()
            os.rename(previous, out)
        raise
    try:
        yield out
    except BaseException as exc:
        bad_input = isinstance(exc, PruneGuardError) and getattr(exc, "exit_code", 2) == 2
        if moved:
            remove_own_folder(out)
            os.rename(previous, out)
        elif made and (bad_input or _only_marker(out)):
            remove_own_folder(out)
            for parent in made[1:]:  # parents made for it, when nothing else was put there meanwhile
                with contextlib.suppress(OSError):
                    parent.rmdir()
        raise
    if previous.exists():
        remove_own_folder(previous)
