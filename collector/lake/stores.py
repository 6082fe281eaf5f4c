"""Where the lake lives: a local directory, `s3://bucket/prefix` (boto3) or `gs://bucket/prefix` (pyarrow's GCS
filesystem). Objects are written whole (a local file is written beside its name and renamed over it; an S3 or GCS
object appears whole or not at all), so a reader never sees half a partition file.

Keys are relative, `/`-separated paths under the lake's root (`events/event_date=2026-11-01/c1.parquet`).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class LakeStore(Protocol):
    uri: str

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str) -> list[str]: ...


class LocalStore:
    """A directory. `put` writes `.name.<uuid>.tmp` then renames: readers that list `*.parquet` skip it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents:
            raise ValueError(f"lake key {key!r} leaves the lake root")
        return p

    def put(self, key: str, data: bytes) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)

    def get(self, key: str) -> bytes | None:
        p = self._path(key)
        return p.read_bytes() if p.exists() else None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root)).replace(os.sep, "/") for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))


class S3Store:
    """`s3://bucket/prefix` through boto3 (credentials, region and `AWS_ENDPOINT_URL` as boto3 finds them)."""

    def __init__(self, uri: str, client=None, endpoint_url: str | None = None) -> None:
        u = urlparse(uri)
        self.bucket, self.prefix = u.netloc, u.path.strip("/")
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        if client is None:
            from cost.aws_sync import s3_client

            client = s3_client(endpoint_url)
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> list[str]:
        out = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self._key(prefix)):
            out += [o["Key"][strip:] for o in page.get("Contents", [])]
        return sorted(out)


class GcsStore:
    """`gs://bucket/prefix` through pyarrow's GCS filesystem (Application Default Credentials; `anonymous` and
    `endpoint_override` for an emulator). Not exercised against the real service here: see docs/scale.md."""

    def __init__(self, uri: str, fs=None) -> None:
        u = urlparse(uri)
        self.base = f"{u.netloc}/{u.path.strip('/')}".rstrip("/")
        self.uri = f"gs://{self.base}"
        if fs is None:
            from pyarrow import fs as pafs

            fs = pafs.GcsFileSystem()
        self.fs = fs

    def put(self, key: str, data: bytes) -> None:
        with self.fs.open_output_stream(f"{self.base}/{key}") as out:
            out.write(data)

    def get(self, key: str) -> bytes | None:
        from pyarrow import fs as pafs

        path = f"{self.base}/{key}"
        if self.fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        with self.fs.open_input_stream(path) as src:
            return src.read()

    def delete(self, key: str) -> None:
        self.fs.delete_file(f"{self.base}/{key}")

    def list(self, prefix: str) -> list[str]:
        from pyarrow import fs as pafs

        sel = pafs.FileSelector(f"{self.base}/{prefix}".rstrip("/"), recursive=True, allow_not_found=True)
        return sorted(i.path[len(self.base) + 1:] for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File)


def open_store(target: str, *, s3_endpoint_url: str | None = None) -> LakeStore:
    """A store for `DIR`, `file://DIR`, `s3://bucket/prefix` or `gs://bucket/prefix`."""
    scheme = urlparse(target).scheme
    if scheme == "s3":
        return S3Store(target, endpoint_url=s3_endpoint_url)
    if scheme == "gs":
        return GcsStore(target)
    if scheme == "file":
        return LocalStore(urlparse(target).path)
    if scheme and len(scheme) > 1:
        raise ValueError(f"unsupported lake location {target!r}: use a directory, s3://bucket/prefix or gs://bucket/prefix")
    return LocalStore(target)
