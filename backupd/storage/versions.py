"""Listing object versions under a repository prefix (paginated)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class Version:
    """One object version or delete marker."""

    key: str
    version_id: str
    last_modified: datetime
    is_latest: bool
    delete_marker: bool = False
    size: int = 0


def list_versions(s3, bucket: str, prefix: str) -> list[Version]:
    """Every version and delete marker under prefix."""
    out: list[Version] = []
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
    for page in pages:
        for v in page.get("Versions") or []:
            out.append(Version(v["Key"], v["VersionId"], v["LastModified"], v["IsLatest"], False, v.get("Size", 0)))
        for m in page.get("DeleteMarkers") or []:
            out.append(Version(m["Key"], m["VersionId"], m["LastModified"], m["IsLatest"], True))
    return out


def repository_data(versions: list[Version], prefix: str) -> list[Version]:
    """Current, non-deleted versions of repository objects: everything but restic's locks/."""
    locks = prefix.rstrip("/") + "/locks/"
    return [v for v in versions if v.is_latest and not v.delete_marker and not v.key.startswith(locks)]
