"""Small helpers shared by the model modules: the properties almost every AMS entity carries."""

from __future__ import annotations

from openams.odata.edm import Property

NAMESPACE = "Microsoft.Cloud.Media.Vod.Rest.Data.Models"
CONTAINER = "WindowsAzureMediaServices"

UNBOUNDED_TEXT = 4000
"""The usual `≤ 4000` limit of AMS free-text properties."""


def server_id(name: str = "Id") -> Property:
    """A string key the service always generates (`nb:xxx:UUID:<guid>`); client values are ignored."""
    return Property(name, "Edm.String", nullable=False, computed=True)


def client_id(name: str = "Id") -> Property:
    """A string key the client may choose; the service generates one only when it is absent."""
    return Property(name, "Edm.String", nullable=False, immutable=True)


def created() -> Property:
    return Property("Created", "Edm.DateTime", nullable=False, computed=True)


def last_modified() -> Property:
    return Property("LastModified", "Edm.DateTime", nullable=False, computed=True)


def timestamps() -> tuple[Property, Property]:
    return created(), last_modified()
