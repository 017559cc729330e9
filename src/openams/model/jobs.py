"""Encoding: jobs, tasks, templates, media processors, notification endpoints, reserved units."""

from __future__ import annotations

from openams.odata.edm import EntityType, NavigationProperty, Property

from . import enums
from .common import UNBOUNDED_TEXT, client_id, created, last_modified, server_id

CONFIGURATION_MAX = 100_000
"""Task/TaskTemplate `Configuration` limit (preset name or preset XML/JSON)."""

JOB = EntityType(
    "Job",
    key="Id",
    key_prefix="nb:jid:UUID:",
    properties=(
        server_id(),
        Property("Name", "Edm.String", max_length=UNBOUNDED_TEXT),
        created(),
        last_modified(),
        Property("EndTime", "Edm.DateTime", computed=True),
        Property("Priority", "Edm.Int32", nullable=False, default=0),
        # seconds per the reference; the SDK reads it as milliseconds
        Property("RunningDuration", "Edm.Double", nullable=False, computed=True, default=0.0),
        Property("StartTime", "Edm.DateTime", computed=True),
        Property("State", "Edm.Int32", nullable=False, computed=True, default=0, enum=enums.JOB_STATE),
        Property("TemplateId", "Edm.String", immutable=True),
        Property("JobNotificationSubscriptions", "JobNotificationSubscription", collection=True,
                 immutable=True, default=[]),
    ),
    navigations=(
        NavigationProperty("Tasks", "Tasks", link="job_tasks"),
        NavigationProperty("InputMediaAssets", "Assets", link="job_inputs"),
        NavigationProperty("OutputMediaAssets", "Assets", link="job_outputs", bindable=False),
    ),
)

# Tasks only exist inside a job; what defines the work is fixed at creation.
TASK = EntityType(
    "Task",
    key="Id",
    key_prefix="nb:tid:UUID:",
    properties=(
        server_id(),
        Property("Configuration", "Edm.String", max_length=CONFIGURATION_MAX, immutable=True),
        Property("EndTime", "Edm.DateTime", computed=True),
        Property("ErrorDetails", "ErrorDetail", collection=True, computed=True, default=[]),
        Property("HistoricalEvents", "TaskHistoricalEvent", collection=True, computed=True, default=[]),
        Property("MediaProcessorId", "Edm.String", nullable=False, required=True, immutable=True),
        Property("Name", "Edm.String", max_length=UNBOUNDED_TEXT),
        Property("PerfMessage", "Edm.String", computed=True),
        Property("Priority", "Edm.Int32", nullable=False, default=0),
        Property("Progress", "Edm.Double", nullable=False, computed=True, default=0.0),
        Property("RunningDuration", "Edm.Double", nullable=False, computed=True, default=0.0),
        Property("StartTime", "Edm.DateTime", computed=True),
        # JobState values (what the SDK reads), not the reference's None/Active/Running/Completed
        Property("State", "Edm.Int32", nullable=False, computed=True, default=0, enum=enums.JOB_STATE),
        Property("TaskBody", "Edm.String", nullable=False, required=True, immutable=True),
        Property("Options", "Edm.Int32", nullable=False, immutable=True, default=0, enum=enums.TASK_OPTIONS),
        Property("EncryptionKeyId", "Edm.String", immutable=True),
        Property("EncryptionScheme", "Edm.String", immutable=True, description="ConfigurationEncryption"),
        Property("EncryptionVersion", "Edm.String", immutable=True),
        Property("InitializationVector", "Edm.String", max_length=UNBOUNDED_TEXT, immutable=True),
        Property("TaskNotificationSubscriptions", "TaskNotificationSubscription", collection=True,
                 immutable=True, default=[]),
    ),
    navigations=(
        NavigationProperty("InputMediaAssets", "Assets", link="task_inputs", bindable=False),
        NavigationProperty("OutputMediaAssets", "Assets", link="task_outputs", bindable=False),
    ),
)

# JobTemplates cannot be updated: every client field is create-only.
JOB_TEMPLATE = EntityType(
    "JobTemplate",
    key="Id",
    key_prefix="nb:jtid:UUID:",
    properties=(
        server_id(),
        Property("Name", "Edm.String", immutable=True),
        created(),
        last_modified(),
        Property("JobTemplateBody", "Edm.String", nullable=False, required=True, immutable=True),
        Property("NumberofInputAssets", "Edm.Int32", nullable=False, immutable=True, default=0),
        # "required" in the reference, omitted by one sample; SystemLevel (0) is reserved.
        Property("TemplateType", "Edm.Int32", nullable=False, immutable=True, default=1,
                 enum=enums.JOB_TEMPLATE_TYPE),
    ),
    navigations=(NavigationProperty("TaskTemplates", "TaskTemplates", link="jobtemplate_tasktemplates"),),
)

# Created only inside a JobTemplate (deep insert or $batch), with a client-chosen id; never updated.
TASK_TEMPLATE = EntityType(
    "TaskTemplate",
    key="Id",
    key_prefix="nb:ttid:UUID:",
    properties=(
        client_id(),
        Property("Configuration", "Edm.String", max_length=CONFIGURATION_MAX, immutable=True),
        created(),
        Property("Description", "Edm.String", max_length=UNBOUNDED_TEXT, immutable=True),
        last_modified(),
        Property("MediaProcessorId", "Edm.String", immutable=True),
        Property("Name", "Edm.String", max_length=UNBOUNDED_TEXT, immutable=True),
        Property("NumberofInputAssets", "Edm.Int32", nullable=False, required=True, immutable=True),
        Property("NumberofOutputAssets", "Edm.Int32", nullable=False, required=True, immutable=True),
        Property("Options", "Edm.Int32", nullable=False, immutable=True, default=0,
                 enum=enums.TASK_TEMPLATE_OPTIONS),
        Property("EncryptionKeyId", "Edm.String", immutable=True),
        Property("EncryptionScheme", "Edm.String", immutable=True, description="ConfigurationEncryption"),
        Property("EncryptionVersion", "Edm.String", immutable=True),
        Property("InitializationVector", "Edm.String", immutable=True),
    ),
)

# Read-only catalogue (see catalogue.py).
MEDIA_PROCESSOR = EntityType(
    "MediaProcessor",
    key="Id",
    key_prefix="nb:mpid:UUID:",
    properties=(
        server_id(),
        Property("Description", "Edm.String", computed=True),
        Property("Name", "Edm.String", computed=True),
        Property("Sku", "Edm.String", computed=True),
        Property("Vendor", "Edm.String", computed=True),
        Property("Version", "Edm.String", computed=True, description="dotted .NET version"),
    ),
)

NOTIFICATION_END_POINT = EntityType(
    "NotificationEndPoint",
    key="Id",
    key_prefix="nb:nepid:UUID:",
    properties=(
        server_id(),
        Property("Name", "Edm.String", nullable=False, required=True),
        created(),
        Property("EndPointType", "Edm.Int32", nullable=False, required=True, immutable=True,
                 enum=enums.ENDPOINT_TYPE),
        Property("EndPointAddress", "Edm.String", nullable=False, required=True, immutable=True,
                 description="queue name, table URL or webhook URL"),
        Property("CredentialType", "Edm.Int32", nullable=False, default=0, enum=enums.CREDENTIAL_TYPE),
        Property("EncryptedEndPointCredential", "Edm.String"),
        Property("ProtectionKeyId", "Edm.String"),
        Property("ProtectionKeyType", "Edm.Int32", nullable=False, default=0,
                 enum=enums.PROTECTION_KEY_TYPE),
    ),
)

# One row per account, keyed by the account's GUID (never generated from a prefix).
ENCODING_RESERVED_UNIT_TYPE = EntityType(
    "EncodingReservedUnitType",
    key="AccountId",
    key_prefix=None,
    properties=(
        Property("AccountId", "Edm.Guid", nullable=False, computed=True),
        Property("ReservedUnitType", "Edm.Int32", nullable=False, default=0, enum=enums.RESERVED_UNIT_TYPE),
        Property("CurrentReservedUnits", "Edm.Int32", nullable=False, default=0),
        Property("MaxReservableUnits", "Edm.Int32", nullable=False, computed=True, default=25),
    ),
)
