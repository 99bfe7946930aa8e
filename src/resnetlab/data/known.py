"""The data sets this project knows by their content: what a digest is called in run folders, results and cards.

A run's key names its data by content (:func:`~resnetlab.data.datasets.content_digest`), never by path. This table
gives the digests of the data sets the project's results were made on a name for folders and a title for people, so
every number can say which data it comes from. Data not in the table is named by its digest.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KNOWN_DATA", "KnownData", "data_name", "known_data"]


@dataclass(frozen=True)
class KnownData:
    name: str  # in paths: runs/<name>/<budget>/, results/<name>/, release names
    title: str  # in tables and cards
    digest: str  # content_digest() of the loaded data (official releases in canonical order)
    official: bool  # the official pixels, comparable with the paper's and published numbers


KNOWN_DATA: tuple[KnownData, ...] = (
    # The official CIFAR-10 python release, its images sorted by their official file names within each split (so the
    # tarball from the official URL and any re-ordered copy give this digest).
    KnownData("cifar10", "CIFAR-10 (official pixels)",
              "3760f8eda6189dee5136e2a2267f531f141230cdd3ee1f46bcad7e8ea76dc42f", official=True),
    # A lossy copy: every image re-encoded as JPEG at quality 75, in class folders (about 10 points of test error
    # worse than the official pixels for a net trained on them). The project's first results were made on it.
    KnownData("cifar10-jpeg", "CIFAR-10 JPEG copy (quality 75; not comparable with published numbers)",
              "3d78e9e04fabec6c0976a793a32acb75a049a5e6ca918ff32fffe0baf6cb631c", official=False),
)


def known_data(digest: str | None) -> KnownData | None:
    """The known data set with this content digest, or None."""
    return next((k for k in KNOWN_DATA if k.digest == digest), None)


def data_name(digest: str) -> str:
    """The folder name of a data set: its known name, else ``data-`` and the digest's first 8 digits (content, not
    path: two copies of the same images in different folders share their runs)."""
    known = known_data(digest)
    return known.name if known is not None else f"data-{digest[:8]}"
