"""Service operations (unbound, `GET /Name?param=literal`) and bound actions (`POST Set('id')/Name`).

Parameter names are as the SDK sends them; matching them case-insensitively is the surface's job
(the documentation writes `ProtectionKeyId=` where the SDK writes `protectionKeyId=`).
Where the functions page and real traffic disagree on a type (GetKeyDeliveryUrl, Scale) the model
follows the traffic: integers in, strings out.
"""

from __future__ import annotations

from openams.odata.edm import FunctionImport, Parameter


def _get(name: str, *params: Parameter, returns: str | None = None) -> FunctionImport:
    return FunctionImport(name, tuple(params), return_type=returns, http_method="GET", binding=None)


def _action(name: str, binding: str, *params: Parameter, returns: str | None = None) -> FunctionImport:
    return FunctionImport(name, tuple(params), return_type=returns, http_method="POST", binding=binding)


UNBOUND: tuple[FunctionImport, ...] = (
    _get("CancelJob", Parameter("jobid")),
    _get("CreateFileInfos", Parameter("assetid")),
    _get("GetProtectionKeyId", Parameter("contentKeyType", "Edm.Int32"), returns="Edm.String"),
    _get("GetProtectionKey", Parameter("protectionKeyId"), returns="Edm.String"),
    _get("RebindContentKey", Parameter("id"), Parameter("x509Certificate"), returns="Edm.String"),
)

_LONG_RUNNING = ("StreamingEndpoints", "Channels", "Programs")

BOUND: tuple[FunctionImport, ...] = (
    _action("Publish", "Assets"),
    _action(
        "GetKeyDeliveryUrl", "ContentKeys", Parameter("keyDeliveryType", "Edm.Int32"), returns="Edm.String"
    ),
    *(_action("Start", s) for s in _LONG_RUNNING),
    *(_action("Stop", s) for s in _LONG_RUNNING),
    _action("Scale", "StreamingEndpoints", Parameter("scaleUnits", "Edm.Int32")),
    _action("ShowSlate", "Channels", Parameter("duration", "Edm.Time"), Parameter("assetId")),
    _action("HideSlate", "Channels"),
    _action(
        "StartAdvertisement",
        "Channels",
        Parameter("duration", "Edm.Time"),
        Parameter("cueId", "Edm.Int32"),
        Parameter("showSlate", "Edm.Boolean"),
    ),
    # the REST page shows no body, the functions page and the SDK send cueId: optional
    _action("EndAdvertisement", "Channels", Parameter("cueId", "Edm.Int32")),
    _action("Reset", "Channels"),
    # SDK-only telemetry helper; returns the SAS URIs of the monitoring tables
    _action(
        "GetMonitoringSasUris",
        "NotificationEndPoints",
        Parameter("monitoringStartDate", "Edm.DateTime"),
        Parameter("monitoringEndDate", "Edm.DateTime"),
        returns="Collection(Edm.String)",
    ),
)

FUNCTIONS: tuple[FunctionImport, ...] = UNBOUND + BOUND
