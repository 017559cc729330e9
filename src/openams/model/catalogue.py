"""Built-in MediaProcessors rows (plain data; the entity layer serves them read-only).

Clients look processors up by exact `Name` and pick the highest `Version` (parsed as a dotted .NET
version), so both must stay exactly as the real service published them.
"""

from __future__ import annotations

from typing import Final

MEDIA_ENCODER_STANDARD_ID: Final = "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56"
AZURE_MEDIA_ENCODER_ID: Final = "nb:mpid:UUID:1b1da727-93ae-4e46-a8a1-268828765609"
WINDOWS_AZURE_MEDIA_ENCODER_ID: Final = "nb:mpid:UUID:70bdc2c3-ebf4-42a9-8542-5afc1e55d217"


def _processor(id_: str, name: str, version: str) -> dict[str, str]:
    return {
        "Id": id_, "Name": name, "Description": name, "Sku": "", "Vendor": "Microsoft", "Version": version
    }


MEDIA_PROCESSORS: Final[tuple[dict[str, str], ...]] = (
    _processor(MEDIA_ENCODER_STANDARD_ID, "Media Encoder Standard", "1.1"),
    # legacy encoder, later retired by Azure; kept so code looking it up by name still finds it
    _processor(AZURE_MEDIA_ENCODER_ID, "Azure Media Encoder", "4.4"),
    # oldest name; the id is inferred from a 2013 SDK capture and the version is not documented
    _processor(WINDOWS_AZURE_MEDIA_ENCODER_ID, "Windows Azure Media Encoder", "4.4"),
)
"""One dict per row, keyed by MediaProcessor property name."""

DEFAULT_MEDIA_PROCESSOR_ID: Final = MEDIA_ENCODER_STANDARD_ID
