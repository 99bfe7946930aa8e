"""Files written so that a crash, a full disk or a second reader never sees half of one, files that carry their
SHA-256 beside them (``NAME.sha256``, the ``sha256sum`` format), and the one HTTP download, checked before it is
kept. The data, weights and training code all write and fetch through here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["DownloadError", "append_line", "atomic_path", "atomic_write", "checksum_path", "download", "fsync_dir",
           "read_checksum", "sha256_hex", "write_checksum"]

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the process's umask, restored at once


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` atomically: ``write`` fills a temp file in the same folder, which is fsynced and
    renamed.

    Readers never see a partly written file: they see either the old file or the complete new one. The temp
    file is removed if anything fails. ``OSError`` propagates to the caller.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from the rest of a team
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """For writers that take a file name rather than a file (the ONNX and ``torch.export`` savers): a temporary path
    in ``path``'s folder, renamed onto ``path`` when the block ends without error and removed when it raises, so
    ``path`` is either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def append_line(path: Path, line: str) -> None:
    """Append one line to a log (``metrics.jsonl``), flushed to disk before returning. A crash or a full disk can
    leave at most a torn last line, which the log's reader drops."""
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a folder's entry table to disk (makes a rename durable); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def checksum_path(path: Path) -> Path:
    """Where the SHA-256 of ``path`` is kept: ``path.sha256`` beside it."""
    return path.with_name(path.name + ".sha256")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_checksum(path: Path, digest: str) -> None:
    """Write ``path.sha256`` (atomically) in the ``sha256sum`` format."""
    atomic_write(checksum_path(path), lambda f: f.write(f"{digest}  {path.name}\n".encode()))


def read_checksum(path: Path) -> str | None:
    """The SHA-256 recorded beside ``path``, or None when there is no (or an empty) ``.sha256`` file."""
    side = checksum_path(path)
    words = side.read_text().split() if side.is_file() else []
    return words[0] if words else None


class DownloadError(Exception):
    """A download that failed; nothing was left behind. ``kind`` says what went wrong, for the caller's message:
    "connect" (no server), "http" (an error status), "broken" (the transfer stopped), "size" (truncated or too
    long), "hash" (the bytes are not the expected ones) or "write" (the target folder is not writable or full)."""

    def __init__(self, kind: str, reason: str, received: int = 0, actual: str | None = None) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.received, self.actual = kind, reason, received, actual


def download(url: str, target: Path, *, algorithm: str, expected: str, size: int | None = None,
             progress: bool = True, timeout: float = 30.0, desc: str | None = None) -> Path:
    """Fetch ``url`` to ``target``: streamed into a temporary file beside it, checked (its length against ``size``,
    else the announced length, and its ``algorithm`` digest against ``expected``), fsynced, then renamed. Any
    failure leaves nothing behind and raises one :class:`DownloadError`; the data and weights code word it."""
    import http.client
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    digest, got = hashlib.new(algorithm), 0
    tmp: Path | None = None
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        except OSError as exc:
            raise DownloadError("write", exc.strerror or str(exc)) from None
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as out:
            try:
                resp = urllib.request.urlopen(url, timeout=timeout)
            except urllib.error.HTTPError as exc:
                raise DownloadError("http", f"HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
                raise DownloadError("connect", str(getattr(exc, "reason", exc))) from None
            with resp:
                length = resp.headers.get("Content-Length")
                announced = int(length) if length and length.isdigit() else None
                total = size if size is not None else announced
                with tqdm(total=total, unit="B", unit_scale=True, desc=desc or target.name, disable=not progress,
                          leave=False) as bar:
                    while True:
                        try:
                            chunk = resp.read(1 << 20)
                        except (OSError, http.client.HTTPException) as exc:  # reset, timeout, TLS error
                            raise DownloadError("broken", f"the transfer broke off after {got} bytes "
                                                f"({type(exc).__name__})", got) from None
                        if not chunk:
                            break
                        got += len(chunk)
                        if size is not None and got > size:  # a wrong file: stop before it fills the disk
                            raise DownloadError("size", f"the server sends more than the {size} bytes expected", got)
                        try:
                            out.write(chunk)
                        except OSError as exc:
                            raise DownloadError("write", exc.strerror or str(exc), got) from None
                        digest.update(chunk)
                        bar.update(len(chunk))
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise DownloadError("write", exc.strerror or str(exc), got) from None
        if total is not None and got != total:
            raise DownloadError("size", f"the file is truncated or wrong: {got} bytes received, {total} expected",
                                got)
        if digest.hexdigest() != expected.lower():
            raise DownloadError("hash", f"its {algorithm} is {digest.hexdigest()}, expected {expected.lower()}", got,
                                digest.hexdigest())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return target
