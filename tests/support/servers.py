"""Conventions shared by tests that start real `openams serve` processes."""

STORAGE_VARS = ("OPENAMS_STORAGE_BACKEND", "OPENAMS_AZURE_", "OPENAMS_S3_", "OPENAMS_SERVER_KEY")
"""Environment variables a test server or worker keeps: the selected storage backend (so the whole
suite runs against it) and the session's server key (every process sharing a database needs it)."""
