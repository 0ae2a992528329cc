"""Rendered images on disk (RENDER_STORAGE_DIR). Written to a temporary name and renamed, so a
crash never leaves a half-written image under a job's name. Several replicas on several
machines need this directory shared (a network volume)."""
from __future__ import annotations

import os

EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg"}


class ImageStore:
    def __init__(self, directory: str):
        self._directory = directory
        os.makedirs(directory, exist_ok=True)

    def save(self, job_id: int, data: bytes, content_type: str) -> str:
        name = f"job-{job_id}{EXTENSIONS.get(content_type, '.bin')}"
        path = os.path.join(self._directory, name)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return name

    def path(self, name: str) -> str:
        return os.path.join(self._directory, os.path.basename(name))

    def exists(self, name: str | None) -> bool:
        return name is not None and os.path.exists(self.path(name))

    def remove(self, name: str | None) -> None:
        """Gone already is fine: replicas may remove the same picture."""
        if name:
            try:
                os.remove(self.path(name))
            except FileNotFoundError:
                pass

    def read_chunks(self, name: str, chunk_size: int = 64 * 1024):
        with open(self.path(name), "rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk
