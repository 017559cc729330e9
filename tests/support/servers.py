"""Conventions shared by tests that start real `openams serve` processes."""

STORAGE_VARS = ("OPENAMS_STORAGE_BACKEND", "OPENAMS_AZURE_", "OPENAMS_S3_")
"""Environment variables a test server keeps, so the whole suite runs against the selected backend."""
