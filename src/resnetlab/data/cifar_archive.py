"""Fetching and unpacking the official CIFAR tarballs: download with MD5 check, tarball verification, and safe
extraction into the cache (no absolute paths, ``..`` components, links or device files); :mod:`.cifar` re-exports
the public names.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from tqdm import tqdm

from .cache import file_digest, fsync_dir, resolve_cache_dir
from .cifar_releases import _DATA_HINT, CIFAR10, CIFAR100, CifarRelease, get_release
from .errors import DataError, DataWarning

# --------------------------------------------------------------------------------------------------- download


def download(
    name: str,
    root: Path,
    url: str | None = None,
    md5: str | None = None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download the official tarball of ``name`` (``cifar10``/``cifar100``) into ``root`` and verify its MD5.

    Args:
        name: ``cifar10`` or ``cifar100``.
        root: folder to download into; the file is ``root / "cifar-10-python.tar.gz"`` (or the CIFAR-100
            name).
        url: a different source (a mirror, or a ``file://`` URL in tests); defaults to the official URL.
        md5: the expected MD5 of the file at ``url``; defaults to the official checksum.
        progress: show a tqdm progress bar on stderr.
        timeout: socket timeout in seconds.

    Returns:
        The path of the verified tarball. If it is already there with the right checksum, nothing is
        downloaded.

    Raises:
        DataError: no network (the message says how to pass a local copy with ``--data``), an HTTP error, a
            checksum mismatch (the bad download is deleted), or an existing file with the wrong checksum.
    """
    release = get_release(name)
    url = url or release.url
    expected = (md5 or release.md5).lower()
    root = Path(root).expanduser()
    target = root / release.archive
    if target.exists():
        actual = file_digest(target, "md5")
        if actual == expected:
            return target
        raise DataError(
            f"{target} exists but its md5 is {actual}, expected {expected}: it is incomplete or not the "
            f"official {release.title} file; delete it and retry"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{release.archive}.", suffix=".part", dir=root)
    except OSError as e:
        raise DataError(f"cannot write into {root}: {e.strerror or e}; pass --cache-dir a writable folder") from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _fetch(url, out, tmp, release, progress=progress, timeout=timeout)
            out.flush()
            os.fsync(out.fileno())
        if actual != expected:
            raise DataError(
                f"checksum mismatch for {url}: md5 {actual}, expected {expected}. The download is corrupt or "
                f"incomplete and was deleted: retry, or download {release.url} by hand and pass it with --data"
            )
        os.replace(tmp, target)
        fsync_dir(root)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def _fetch(url: str, out: Any, tmp: Path, release: CifarRelease, *, progress: bool, timeout: float) -> str:
    """Stream ``url`` into the open file ``out`` and return the MD5 of the bytes written."""
    local_copy = (
        f"download {release.url} on a machine with internet access and pass the file with "
        f"--data /path/to/{release.archive} (or the extracted {release.folder} folder)"
    )
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DataError(f"downloading {url} failed: HTTP {e.code} {e.reason}; {local_copy}") from e
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"cannot download {url} ({reason}): no internet connection? {local_copy}") from e
    h = hashlib.md5()
    received = 0
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=f"downloading {release.archive}",
            disable=not progress,
        ) as bar:
            while True:
                try:
                    chunk = response.read(1 << 20)
                except (OSError, http.client.HTTPException) as e:
                    raise DataError(
                        f"download of {url} broke off after {received} bytes ({e}); retry, or {local_copy}"
                    ) from e
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as e:
                    raise DataError(f"cannot write {tmp}: {e.strerror or e} (disk full?); free space and retry") from e
                h.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise DataError(f"download of {url} is incomplete ({received} of {total} bytes); retry, or {local_copy}")
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------- extraction


def _is_tarball(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _unsafe_member_name(name: str) -> bool:
    """True for archive member names that could escape the extraction folder."""
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return True
    parts = name.replace("\\", "/").split("/")
    return ".." in parts


def _verify_tarball(tarball: Path, md5: str | None, stacklevel: int = 3) -> str:
    """MD5 of ``tarball``, checked against ``md5`` (mismatch: DataError) or the official sums (else warn)."""
    if not tarball.is_file():
        raise DataError(f"{tarball} does not exist or is not a file; {_DATA_HINT}")
    digest = file_digest(tarball, "md5")
    if md5 is not None and digest != md5.lower():
        raise DataError(
            f"checksum mismatch for {tarball}: md5 {digest}, expected {md5.lower()}; the file is corrupt or "
            "incomplete: delete it and download it again"
        )
    if md5 is None and digest not in (CIFAR10.md5, CIFAR100.md5):
        warnings.warn(
            f"{tarball} is not an official CIFAR release (md5 {digest}); reading it anyway because it was "
            "passed explicitly. Only use archives you trust.",
            DataWarning,
            stacklevel=stacklevel,
        )
    return digest


def _extract_to_cache(tarball: Path, digest: str, cache_dir: Path | None, refresh: bool = False) -> Path:
    stem = tarball.name.removesuffix(".gz").removesuffix(".tgz").removesuffix(".tar")
    base = resolve_cache_dir(cache_dir) / "extracted"
    dest = base / f"{stem}-{digest[:16]}"
    if refresh:
        shutil.rmtree(dest, ignore_errors=True)
    if dest.is_dir():
        return dest
    try:
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=base))
    except OSError as e:
        raise DataError(f"cannot write into {base}: {e.strerror or e}; pass --cache-dir a writable folder") from e
    try:
        _safe_extract(tarball, tmp)
        try:
            os.rename(tmp, dest)
        except OSError as e:
            if not dest.is_dir():  # unless a concurrent extraction finished first
                raise DataError(f"cannot create {dest}: {e.strerror or e}; pass --cache-dir a writable folder") from e
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def extract_official(tarball: Path, cache_dir: Path | None = None, md5: str | None = None) -> Path:
    """Safely extract an official tarball into the cache and return the extraction folder.

    The folder is ``cache_dir / "extracted" / "<archive stem>-<md5 prefix>"`` and is reused when present (it
    is created by an atomic rename, so it is always complete). Members with absolute paths or ``..``
    components, links and device files are refused before anything leaves the temporary folder.

    Args:
        tarball: the ``.tar.gz`` file.
        cache_dir: cache root (default :func:`~resnetlab.data.cache.default_cache_dir`).
        md5: expected MD5; if given, a mismatch raises :class:`DataError`. If omitted and the file is not one
            of the official releases, a :class:`DataWarning` is emitted and the file is read anyway, since the
            user passed it explicitly.
    """
    tarball = Path(tarball).expanduser()
    return _extract_to_cache(tarball, _verify_tarball(tarball, md5), cache_dir)


def _safe_extract(tarball: Path, dest: Path) -> None:
    """Extract regular files and folders of ``tarball`` into ``dest``, refusing anything that could escape."""
    try:
        with tarfile.open(tarball, "r:*") as tar:
            for member in tar:
                name = member.name
                if _unsafe_member_name(name):
                    raise DataError(
                        f"{tarball} contains an unsafe member {name!r} (absolute path or '..'); refusing to "
                        "extract it. It is not an official CIFAR archive: download the official file again"
                    )
                parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
                if not parts:
                    continue
                target = dest.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise DataError(
                        f"{tarball} contains {name!r}, which is a link or special file; refusing to extract "
                        "it. Official CIFAR archives hold regular files only: download the official file "
                        "again"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is None:  # pragma: no cover - isfile() members always have data
                    continue
                with src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except DataError:
        raise
    except OSError as e:
        if e.errno is None:  # gzip.BadGzipFile and friends: a damaged archive, not a write error
            raise _corrupt_archive(tarball, e) from e
        raise DataError(
            f"cannot extract {tarball} into {dest}: {e.strerror or e} (disk full or no permission?); free "
            "space or pass --cache-dir another folder"
        ) from e
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise _corrupt_archive(tarball, e) from e


def _corrupt_archive(tarball: Path, e: BaseException) -> DataError:
    return DataError(
        f"cannot extract {tarball}: the archive is truncated or corrupt ({type(e).__name__}: {e}); "
        "delete it and download it again"
    )

