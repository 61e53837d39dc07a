"""Where avatar JPEGs live. A small interface, so an object store can replace the default: a
directory (a PersistentVolume mounted by the API read-write and by the workers read-only).

Images are addressed by a key relative to the store, which is also the `image.uri` in the
Avatar: the worker resolves it against its own mount of the same volume
(`avatar_worker.config.image_path`), so the two may mount it at different paths.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}/[A-Za-z0-9_]{1,64}\.jpg$")


class AvatarStore(Protocol):
    def put(self, key: str, data: bytes) -> str:
        """Store `data` under `key` (replacing it); returns the URI to record in the Avatar."""
        ...

    def get(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None:
        """Gone already is fine."""
        ...


def image_key(tenant: str, public_id: str) -> str:
    """`<tenant>/<av_...>.jpg`: one directory per tenant, so a tenant's images can be found
    (and removed) together."""
    key = f"{tenant}/{public_id}.jpg"
    if not _KEY.match(key):
        raise ValueError(f"not a valid image key: {key!r}")
    return key


class FilesystemStore:
    """Files under `root`; writes are atomic (a temporary file renamed into place), so a worker
    never reads half an image."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a valid image key: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o644)  # the worker runs as another user
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
