"""Blob storage backends behind one interface (`base.BlobBackend`)."""

from __future__ import annotations

from typing import Any


def open_backend(settings: Any) -> Any:
    """The backend named by `settings.storage_backend`."""
    kind = settings.storage_backend
    if kind == "local":
        from .local import LocalBackend

        return LocalBackend(settings.data_dir / "blobs")
    if kind == "azure":
        from .azure import AzureBackend

        return AzureBackend(settings)
    if kind == "s3":
        from .s3 import S3Backend

        return S3Backend(settings)
    raise ValueError(f"unknown storage backend '{kind}' (use local, azure or s3)")
