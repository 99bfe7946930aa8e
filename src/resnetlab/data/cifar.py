"""The official CIFAR-10 / CIFAR-100 "python version" releases: the release table, download with MD5 check, safe
extraction, parsing the pickles, and loading a release in the canonical order of its file names.

Format (Krizhevsky, 2009). ``cifar-10-python.tar.gz`` holds the folder ``cifar-10-batches-py`` with the
pickles ``data_batch_1`` .. ``data_batch_5`` (10,000 training images each), ``test_batch`` and
``batches.meta`` (``label_names``). ``cifar-100-python.tar.gz`` holds ``cifar-100-python`` with ``train``,
``test`` and ``meta`` (``fine_label_names``). Each batch pickle is a dict with ``b"data"``, a uint8 array
``[N, 3072]`` whose rows are the R plane, then the G plane, then the B plane of one image, each plane 32x32
row-major, and the labels (``b"labels"`` for CIFAR-10, ``b"fine_labels"`` for CIFAR-100).

Trust: the pickles were written by Python 2's cPickle and are read with ``encoding="bytes"``. Unpickling can
run code, so the pickles are trusted only because (a) a downloaded tarball's MD5 is checked against the
official checksum before anything is extracted, or (b) the user explicitly pointed at the files. As defence in
depth the unpickler used here only accepts the handful of numpy globals a CIFAR batch needs, so a tampered
pickle fails with :class:`DataError` instead of running code.
"""

from __future__ import annotations

import codecs
import os
import pickle
import shutil
import tarfile
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch

from ..io import DownloadError, fsync_dir
from ..io import download as download_file
from .arrays import SplitArrays
from .cache import file_digest, resolve_cache_dir
from .errors import DATA_HINT, DataError, DataWarning

__all__ = [
    "CIFAR10", "CIFAR10_FOLDER", "CIFAR10_MD5", "CIFAR10_URL", "CIFAR100", "CIFAR100_FOLDER", "CIFAR100_MD5",
    "CIFAR100_URL", "CifarRelease", "SplitArrays", "download", "extract_official", "find_official_folder",
    "get_release", "is_official", "load_official",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_FOLDER = "cifar-100-python"



@dataclass(frozen=True)
class CifarRelease:
    """Everything needed to fetch and parse one official release."""

    name: str
    title: str
    url: str
    md5: str
    archive: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int


CIFAR10 = CifarRelease(
    name="cifar10",
    title="CIFAR-10",
    url=CIFAR10_URL,
    md5=CIFAR10_MD5,
    archive="cifar-10-python.tar.gz",
    folder=CIFAR10_FOLDER,
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    num_classes=10,
)
CIFAR100 = CifarRelease(
    name="cifar100",
    title="CIFAR-100",
    url=CIFAR100_URL,
    md5=CIFAR100_MD5,
    archive="cifar-100-python.tar.gz",
    folder=CIFAR100_FOLDER,
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
)
_RELEASES = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def get_release(name: str) -> CifarRelease:
    """The release called ``name`` (``cifar10``/``cifar100``; case, ``-`` and ``_`` are ignored)."""
    key = name.lower().replace("-", "").replace("_", "")
    try:
        return _RELEASES[key]
    except KeyError:
        raise DataError(f"unknown dataset name {name!r}: use cifar10 or cifar100, or {DATA_HINT}") from None


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
    local_copy = (f"download {release.url} on a machine with internet access and pass the file with --data "
                  f"/path/to/{release.archive} (or the extracted {release.folder} folder)")
    try:
        return download_file(url, target, algorithm="md5", expected=expected, progress=progress, timeout=timeout,
                             desc=f"downloading {release.archive}")
    except DownloadError as e:
        why = {
            "connect": f"cannot download {url} ({e.reason}): no internet connection? {local_copy}",
            "http": f"downloading {url} failed: {e.reason}; {local_copy}",
            "broken": f"download of {url} broke off after {e.received} bytes; retry, or {local_copy}",
            "size": f"download of {url} is incomplete ({e.reason}); retry, or {local_copy}",
            "hash": f"checksum mismatch for {url}: md5 {e.actual}, expected {expected}. The download is corrupt or "
                    f"incomplete and was deleted: retry, or download {release.url} by hand and pass it with --data",
            "write": f"cannot write into {root}: {e.reason}; free space, or pass --cache-dir a writable folder",
        }
        raise DataError(why[e.kind]) from None


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
        raise DataError(f"{tarball} does not exist or is not a file; {DATA_HINT}")
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


# --------------------------------------------------------------------------------------------------- parsing


def _latin1_encode(obj: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as used by protocol-2 pickles of ``bytes``; only latin-1 is accepted."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"unexpected encoding {encoding!r} in pickle")
    return obj.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    multiarray = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core to numpy._core
    reconstruct = multiarray.multiarray._reconstruct
    scalar = multiarray.multiarray.scalar
    frombuffer = multiarray.numeric._frombuffer
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the numpy globals a CIFAR batch needs (no arbitrary code)."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if _CifarUnpickler._allowed is None:
            _CifarUnpickler._allowed = _numpy_globals()
        try:
            return _CifarUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR pickle") from None


def _unpickle(path: Path) -> Any:
    """Read one official pickle with ``encoding="bytes"``; every failure becomes a :class:`DataError`."""
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError as e:
        raise DataError(f"{path} is missing; extract the official archive again ({DATA_HINT})") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}; check the file's permissions") from e
    except Exception as e:
        raise DataError(
            f"{path} is truncated, corrupt or not a CIFAR batch ({type(e).__name__}: {e}); delete it and "
            "extract or download the official archive again"
        ) from e


def _field(d: Any, key: str, path: Path) -> Any:
    if not isinstance(d, dict):
        raise DataError(f"{path} does not hold a dict but {type(d).__name__}; it is not a CIFAR python pickle")
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"{path} has no {key!r} entry; it is not a {key!r}-style CIFAR python pickle")


def _read_batch(path: Path, release: CifarRelease) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Images ``[N, 3, 32, 32]`` uint8, labels ``[N]`` int64 and file names (None if absent) of one batch file."""
    d = _unpickle(path)
    data = _field(d, "data", path)
    labels = _field(d, release.label_key, path)
    names = _optional_names(d, path)
    try:
        x = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else np.asarray(data)
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path} holds malformed data or labels ({e}); extract the official archive again") from e
    if x.ndim == 1 and x.size % 3072 == 0:
        x = x.reshape(-1, 3072)
    if x.ndim != 2 or x.shape[1] != 3072:
        raise DataError(f"{path}: data must be [N, 3072] (3x32x32 images), got shape {x.shape}")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0 or x.max() > 255)):
            raise DataError(f"{path}: data must be uint8 pixel values, got {x.dtype}")
        x = x.astype(np.uint8)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{path}: {x.shape[0]} images but labels of shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= release.num_classes):
        raise DataError(
            f"{path}: labels must lie in [0, {release.num_classes}), found {y.min()}..{y.max()}; the file is "
            f"corrupt or not {release.title}"
        )
    if names is not None and len(names) != x.shape[0]:
        raise DataError(f"{path}: {x.shape[0]} images but {len(names)} filenames; the file is corrupt")
    # Row layout: R plane, G plane, B plane, each 32x32 row-major, so a plain reshape gives [N, 3, 32, 32].
    return np.ascontiguousarray(x.reshape(-1, 3, 32, 32)), y, names


def _optional_names(d: Any, path: Path) -> list[str] | None:
    """The batch's ``filenames`` entry (the official release has one per image), or None if it has none."""
    found = [d[k] for k in (b"filenames", "filenames") if isinstance(d, dict) and k in d]
    if not found:
        return None
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in found[0]]
    except (TypeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: malformed filenames ({e}); extract the official archive again") from e


def canonical_order(names: list[str] | None, what: str) -> np.ndarray | None:
    """The permutation that sorts a split by its official file names, so that everything derived from the data (its
    digest, hence the run keys; the validation split; the batches) is the same whatever order the files hold the
    images in. None when the names are missing (the file order is kept, with a warning) or not unique."""
    if names is None:
        warnings.warn(f"the {what} batches have no 'filenames' entry, so their images keep the order of the files; "
                      "a copy of the same images in another order gets other run keys and another validation split",
                      DataWarning, stacklevel=4)
        return None
    if len(set(names)) != len(names):
        raise DataError(f"the {what} batches name some images twice in 'filenames'; the files are corrupt: "
                        "extract the official archive again")
    return np.argsort(np.array(names, dtype=object), kind="stable")


def _read_names(path: Path, release: CifarRelease) -> list[str]:
    names = _field(_unpickle(path), release.names_key, path)
    try:
        out = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except (TypeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: malformed {release.names_key} ({e}); extract the official archive again") from e
    if len(out) != release.num_classes:
        raise DataError(f"{path}: {release.names_key} has {len(out)} names, {release.title} has {release.num_classes}")
    return out


def _detect_release(folder: Path) -> CifarRelease | None:
    """The release whose files sit directly in ``folder``, if any."""
    if (folder / "data_batch_1").is_file() or (folder / "batches.meta").is_file():
        return CIFAR10
    if (folder / "meta").is_file() and (folder / "train").is_file():
        return CIFAR100
    return None


def find_official_folder(path: Path) -> tuple[CifarRelease, Path] | None:
    """``(release, folder with the pickles)`` for a release folder or the folder holding one, else None."""
    path = Path(path)
    release = _detect_release(path)
    if release is not None:
        return release, path
    found = [(r, path / r.folder) for r in (CIFAR10, CIFAR100) if (path / r.folder).is_dir()]
    if len(found) > 1:
        raise DataError(f"{path} holds both {CIFAR10.folder} and {CIFAR100.folder}; pass --data one of them")
    if found:
        release = _detect_release(found[0][1])
        return (release or found[0][0]), found[0][1]
    return None


def is_official(path: Path) -> bool:
    """True if ``path`` is a CIFAR tarball, an extracted release folder or a folder holding one."""
    path = Path(path)
    if path.is_file():
        return _is_tarball(path)
    return path.is_dir() and find_official_folder(path) is not None


def load_official(path: Path, cache_dir: Path | None = None, md5: str | None = None) -> SplitArrays:
    """Load an official CIFAR-10/100 python release.

    Args:
        path: the ``.tar.gz`` file (extracted safely into the cache, see :func:`extract_official`), the
            extracted ``cifar-10-batches-py`` / ``cifar-100-python`` folder, or the folder that contains it.
        cache_dir: where tarballs are extracted (default: the resnetlab cache).
        md5: expected MD5 of a tarball (ignored for folders).

    Returns:
        :class:`SplitArrays` with the official train (50,000) and test (10,000) images, each split sorted by the
        official file names (``filenames`` in every batch), so any copy of the release, in any order, loads the same
        arrays; a release without file names keeps the order of its files (with a :class:`DataWarning`).

    Raises:
        DataError: missing, truncated or corrupt files (the message names the file), unsafe archives.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data folder {path} does not exist; {DATA_HINT}")
    if not path.is_file():
        return _read_release(path)
    if not (_is_tarball(path) or tarfile.is_tarfile(path)):
        raise DataError(f"{path} is neither a CIFAR .tar.gz archive nor a folder; {DATA_HINT}")
    digest = _verify_tarball(path, md5)
    folder = _extract_to_cache(path, digest, cache_dir)
    try:
        return _read_release(folder)
    except DataError as e:
        # The extraction is verified only when it is made; if it was damaged since, extract it once more.
        warnings.warn(f"{e}\nextracting {path} again into {folder}", DataWarning, stacklevel=2)
        return _read_release(_extract_to_cache(path, digest, cache_dir, refresh=True))


def _read_release(path: Path) -> SplitArrays:
    found = find_official_folder(path)
    if found is None:
        raise DataError(
            f"{path} holds no {CIFAR10.folder} ({', '.join(CIFAR10.train_files)}, test_batch, batches.meta) "
            f"or {CIFAR100.folder} (train, test, meta) release; {DATA_HINT}"
        )
    release, folder = found
    classes = _read_names(folder / release.meta_file, release)
    splits = []
    for what, files in (("training", release.train_files), ("test", release.test_files)):
        parts = [_read_batch(folder / name, release) for name in files]
        x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        names = None if any(p[2] is None for p in parts) else [n for p in parts for n in p[2]]  # type: ignore[union-attr]
        order = canonical_order(names, what)
        if order is not None:
            x, y = x[order], y[order]
        splits.append((torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))))
    (train_x, train_y), (test_x, test_y) = splits
    return SplitArrays(train_x, train_y, test_x, test_y, classes)
