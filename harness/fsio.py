"""Paths given to mammocert and the files it writes, with one-line refusals instead of OSErrors.

* :func:`check_path` refuses a path that no file operation can use: bytes that are not UTF-8
  (Python carries them as lone surrogates, which cannot be written into results.json or a
  report), a name longer than the file system allows (``ENAMETOOLONG``), a NUL byte.
* :func:`make_dir` creates an output directory or says why it cannot (a parent is a file, a
  read-only or virtual file system such as ``/proc``).
* :func:`check_output_file` / :func:`write_atomic`: an output file that already exists must be a
  regular file. Writing goes to a private temporary file next to it, renamed over it at the end,
  so a device node (``/dev/full``), FIFO or directory in its place is refused, never replaced.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from harness.errors import HarnessFault, UsageError


def _limit(name: str, default: int) -> int:
    try:
        return int(os.pathconf("/", name))
    except (OSError, ValueError, AttributeError):
        return default


NAME_MAX = _limit("PC_NAME_MAX", 255)  # bytes in one path component
PATH_MAX = _limit("PC_PATH_MAX", 4096)  # bytes in a whole path, with its terminating NUL


def shown(path: str | os.PathLike[str]) -> str:
    """A path as it can be printed: undecodable bytes as \\xNN, long paths shortened."""
    text = os.fspath(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if len(text) <= 120 else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"


def check_text(text: str, what: str) -> bytes:
    """The UTF-8 bytes of a command-line value, or a UsageError: bytes that are not UTF-8 reach
    Python as lone surrogates, which no results.json, report or log can hold."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"{what} {shown(text)}: not valid UTF-8; rename the file or fix the value "
            "(results and reports record every path and value as UTF-8 text)"
        ) from None


def check_path(path: str | os.PathLike[str], what: str) -> Path:
    """``Path(path)``, or a UsageError naming ``what`` (e.g. ``--out``) when no file operation
    could use it: not UTF-8, a NUL byte, a component over NAME_MAX or the whole over PATH_MAX."""
    text = os.fspath(path)
    raw = check_text(text, what)
    if "\0" in text:
        raise UsageError(f"{what} {shown(text)}: the path contains a NUL byte; fix the path")
    if len(raw) >= PATH_MAX:
        raise UsageError(
            f"{what} {shown(text)}: the path is {len(raw)} bytes, over the system limit of "
            f"{PATH_MAX - 1}; use a shorter path"
        )
    for part in Path(text).parts:
        if len(part.encode("utf-8")) > NAME_MAX:
            raise UsageError(
                f"{what} {shown(text)}: a file name of {len(part.encode('utf-8'))} bytes is over "
                f"the system limit of {NAME_MAX}; use a shorter name"
            )
    return Path(text)


def make_dir(path: Path, what: str) -> Path:
    """Create directory ``path`` (with its parents) or raise a UsageError naming ``what``."""
    path = check_path(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(
            f"{what} {shown(path)}: it or one of its parents exists and is not a directory; "
            "choose another path"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"{what} {shown(path)}: cannot create the directory ({exc.strerror}); choose another path"
        ) from None
    return path


def check_output_file(path: Path, what: str) -> Path:
    """An output file path that can be written: its parent is (or can be made) a directory, and
    if it exists it is a regular file (a device node, FIFO, socket or directory is refused)."""
    path = check_path(path, what)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise UsageError(
            f"{what} {shown(path)}: a parent of the file is not a directory; choose another path"
        ) from None
    except OSError as exc:
        raise UsageError(f"{what} {shown(path)}: cannot use it ({exc.strerror})") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise UsageError(
            f"{what} {shown(path)}: exists and is {kind}; give the path of a regular file "
            "(mammocert replaces only regular files)"
        )
    make_dir(path.parent, f"{what} (its directory)")
    return path


def write_atomic(path: Path, data: bytes, what: str = "output") -> None:
    """Write ``data`` to ``path`` all at once: a private temporary file in the same directory,
    renamed over ``path``. An existing ``path`` must be a regular file (see
    :func:`check_output_file`); a failed write leaves the old file as it was."""
    path = check_output_file(Path(path), what)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:100]}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"{what} {shown(path)}: cannot write here ({exc.strerror})") from None
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except OSError as exc:  # ENOSPC, EIO: the output could not be written, not a bad input
            raise HarnessFault(
                f"{what} {shown(path)}: writing failed ({exc.strerror}); free space and rerun"
            ) from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an output is an ordinary file
        check_output_file(path, what)  # nothing was planted in its place meanwhile
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
