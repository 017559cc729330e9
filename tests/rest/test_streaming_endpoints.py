"""StreamingEndpoints as a client meets them: the default endpoint, create/update/delete and the
Start/Stop/Scale state machine answered 202 + operation-id, validation of the endpoint settings,
host names (with and without a base domain), custom host names across accounts, isolation, and the
origin locators' Path on the default endpoint with ids unique across accounts."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from openams.config import Settings
from openams.entities.streaming_endpoints import host_name, origin_base_url
from openams.rest.app import RestApp
from openams.runtime import Runtime
from tests.conftest import _new_account
from tests.support.client import CONTENT_TYPE, ApiClient

JSON = {"Content-Type": "application/json"}
OPID = re.compile(r"^nb:opid:UUID:[0-9a-f-]{36}$")
CROSS_DOMAIN = ('<?xml version="1.0"?><!DOCTYPE cross-domain-policy SYSTEM '
                '"http://www.macromedia.com/xml/dtds/cross-domain-policy.dtd"><cross-domain-policy>'
                '<allow-access-from domain="*" /></cross-domain-policy>')
CLIENT_ACCESS = ("<access-policy><cross-domain-access><policy><allow-from http-request-headers='*'>"
                 "<domain uri='http://*'/></allow-from><grant-to><resource path='/' include-subpaths='false'/>"
                 "</grant-to></policy></cross-domain-access></access-policy>")


def q(key: str) -> str:
    return quote(key, safe="")


def items(value: Any) -> list[Any]:
    """A collection as a list (verbose JSON wraps it in {"__metadata": …, "results": […]})."""
    return value["results"] if isinstance(value, dict) else value


def se_url(endpoint: dict[str, Any] | str) -> str:
    key = endpoint if isinstance(endpoint, str) else endpoint["Id"]
    return f"StreamingEndpoints('{q(key)}')"


def create(api: ApiClient, props: dict[str, Any], expect: int = 202) -> Any:
    body = api.encode("StreamingEndpoint", props) if api.dialect != "light" else json.dumps(props).encode()
    r = api.request("POST", "StreamingEndpoints", body, **{"Content-Type": CONTENT_TYPE[api.dialect]})
    assert r.status_code == expect, (r.status_code, r.text)
    return r


def make(api: ApiClient, name: str = "edge", **props: Any) -> dict[str, Any]:
    return api.entity(create(api, {"Name": name, **props}))


def read(api: ApiClient, endpoint: dict[str, Any]) -> dict[str, Any]:
    r = api.get(se_url(endpoint))
    assert r.status_code == 200, r.text
    return api.entity(r)


def action(api: ApiClient, endpoint: dict[str, Any], name: str, body: dict[str, Any] | None = None) -> Any:
    return api.request("POST", f"{se_url(endpoint)}/{name}", json.dumps(body).encode() if body else None, **JSON)


def accepted(api: ApiClient, r: Any, target: str) -> str:
    """A 202 with an operation-id whose Operation is Succeeded on `target`."""
    assert r.status_code == 202, (r.status_code, r.text)
    op_id = r.headers["operation-id"]
    assert OPID.match(op_id), op_id
    got = api.get(f"Operations('{q(op_id)}')")
    assert got.status_code == 200, got.text
    op = api.entity(got)
    assert op["Id"] == op_id and op["State"] == "Succeeded" and op["TargetEntityId"] == target
    assert op["ErrorCode"] is None and op["ErrorMessage"] is None
    return op_id


def assert_refused(api: ApiClient, r: Any, *fragments: str, code: str = "InvalidOperation", status: int = 400) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    got_code, message = api.error(r)
    assert got_code == code, (got_code, message)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "operation-id" not in r.headers
    return message


def merge(api: ApiClient, endpoint: dict[str, Any], props: dict[str, Any], method: str = "MERGE") -> Any:
    return api.request(method, se_url(endpoint), json.dumps(props).encode(), **JSON)


# ---- the default endpoint -----------------------------------------------------------------------------


def test_every_account_has_a_running_default_endpoint(any_api: ApiClient) -> None:
    rows = any_api.list("StreamingEndpoints")
    assert len(rows) == 1
    default = rows[0]
    assert default["Name"] == "default" and default["State"] == "Running"
    assert default["ScaleUnits"] == 0 and default["StreamingEndpointVersion"] == "2.0"
    assert default["HostName"] == "openams.test"  # no base domain: the public URL's host
    assert default["Id"].startswith("nb:oid:UUID:") and default["CdnEnabled"] is False
    assert any_api.list("StreamingEndpoints?$filter=Name eq 'default'")[0]["Id"] == default["Id"]


def test_the_default_endpoint_cannot_be_deleted(any_api: ApiClient) -> None:
    default = any_api.list("StreamingEndpoints")[0]
    assert_refused(any_api, any_api.delete(se_url(default)), "default", code="DeleteNotAllowedOnDefaultOrigin")
    accepted(any_api, action(any_api, default, "Stop"), default["Id"])
    assert read(any_api, default)["State"] == "Stopped"
    assert_refused(any_api, any_api.delete(se_url(default)), "default", code="DeleteNotAllowedOnDefaultOrigin")
    accepted(any_api, action(any_api, default, "Start"), default["Id"])
    assert read(any_api, default)["State"] == "Running"


# ---- create ----------------------------------------------------------------------------------------------


def test_create_is_202_with_location_operation_id_and_the_entity(any_api: ApiClient) -> None:
    api = any_api
    r = create(api, {"Name": "Edge-1", "Description": "second origin", "ScaleUnits": 1})
    endpoint = api.entity(r)
    assert endpoint["State"] == "Stopped" and endpoint["Name"] == "Edge-1" and endpoint["ScaleUnits"] == 1
    assert endpoint["HostName"] == "openams.test" and endpoint["Description"] == "second origin"
    assert endpoint["StreamingEndpointVersion"] == "2.0" and items(endpoint["CustomHostNames"]) == []
    assert r.headers["location"].endswith(se_url(endpoint))
    accepted(api, r, endpoint["Id"])
    assert read(api, endpoint)["State"] == "Stopped"
    assert {e["Name"] for e in api.list("StreamingEndpoints")} == {"default", "Edge-1"}


def test_read_only_placeholders_the_sdk_sends_are_ignored(api: ApiClient) -> None:
    body = {"Id": None, "Name": "sdk", "Description": None, "Created": "0001-01-01T00:00:00", "State": "Running",
            "HostName": "evil.example.com", "ScaleUnits": 0, "CdnEnabled": False, "CustomHostNames": [],
            "AccessControl": None, "CacheControl": None, "CrossSiteAccessPolicies": None,
            "FreeTrialEndTime": "2030-01-01T00:00:00Z", "StreamingEndpointVersion": "2.0"}
    endpoint = make(api, **body)
    assert endpoint["State"] == "Stopped" and endpoint["HostName"] == "openams.test"
    assert endpoint["FreeTrialEndTime"] is None and not endpoint["Created"].startswith("0001")


@pytest.mark.parametrize("name", ["-edge", "edge-", "two words", "a_b", "x" * 33, "dot.ted", "é"])
def test_bad_names_are_400(api: ApiClient, name: str) -> None:
    r = create(api, {"Name": name}, expect=400)
    code, message = api.error(r)
    assert code == ("InvalidPropertyValue" if len(name) > 32 else "InvalidResourceName") and "Name" in message
    assert len(api.list("StreamingEndpoints")) == 1


def test_name_is_required(api: ApiClient) -> None:
    assert_refused(api, create(api, {"Description": "nameless"}, expect=400), "Name", code="MissingProperty")


@pytest.mark.parametrize("name", ["edge", "EDGE", "default", "Default"])
def test_names_are_unique_per_account_ignoring_case(api: ApiClient, other_account: Any, name: str) -> None:
    make(api, "edge")
    assert_refused(api, create(api, {"Name": name}, expect=409), name, code="ResourceNameTaken", status=409)
    other = ApiClient.for_account(api.http, other_account)
    if name.lower() != "default":
        assert make(other, name)["Name"] == name  # per account only


def test_name_and_scale_units_cannot_change_by_update(api: ApiClient) -> None:
    endpoint = make(api, "fixed")
    assert_refused(api, merge(api, endpoint, {"Name": "renamed"}), "Name", code="PropertyNotUpdatable")
    assert_refused(api, merge(api, endpoint, {"ScaleUnits": 2}), "ScaleUnits", code="PropertyNotUpdatable")
    got = read(api, endpoint)
    assert got["Name"] == "fixed" and got["ScaleUnits"] == 0


# ---- the state machine ----------------------------------------------------------------------------------


def test_start_stop_scale_delete_matrix(any_api: ApiClient) -> None:
    api = any_api
    endpoint = make(api, "matrix")
    eid = endpoint["Id"]
    # Stopped, 0 units: only Start (and Delete)
    message = assert_refused(api, action(api, endpoint, "Stop"), "Stopped", "Start")
    assert "Stop" in message
    assert_refused(api, action(api, endpoint, "Scale", {"scaleUnits": 1}), "Stopped", "Scale")
    accepted(api, action(api, endpoint, "Start"), eid)
    assert read(api, endpoint)["State"] == "Running"
    # Running: Stop or Scale; not Start, not Delete
    assert_refused(api, action(api, endpoint, "Start"), "Running", "Stop, Scale")
    assert_refused(api, api.delete(se_url(endpoint)), "Running", "Delete")
    accepted(api, action(api, endpoint, "Scale", {"scaleUnits": 2}), eid)
    got = read(api, endpoint)
    assert got["State"] == "Running" and got["ScaleUnits"] == 2
    accepted(api, action(api, endpoint, "Stop"), eid)
    assert read(api, endpoint)["State"] == "Stopped"
    # Stopped with units: Scale is allowed and keeps it Stopped
    accepted(api, action(api, endpoint, "Scale", {"scaleUnits": 3}), eid)
    got = read(api, endpoint)
    assert got["State"] == "Stopped" and got["ScaleUnits"] == 3
    op_id = accepted(api, api.delete(se_url(endpoint)), eid)
    assert api.get(se_url(endpoint)).status_code == 404
    assert api.entity(api.get(f"Operations('{q(op_id)}')"))["State"] == "Succeeded"  # outlives its target


def test_every_operation_is_listed(api: ApiClient) -> None:
    endpoint = make(api, "ops")
    accepted(api, action(api, endpoint, "Start"), endpoint["Id"])
    ops = [o for o in api.list("Operations") if o["TargetEntityId"] == endpoint["Id"]]
    assert len(ops) == 2 and all(o["State"] == "Succeeded" for o in ops)
    rows = api.list(f"Operations?$filter=TargetEntityId eq '{endpoint['Id']}' and State eq 'Succeeded'")
    assert len(rows) == 2


@pytest.mark.parametrize("body,status,fragment,code", [
    (None, 400, "scaleUnits", "BadRequest"),
    ({"scaleUnits": -1}, 400, "between 0 and 10", "BadRequest"),
    ({"scaleUnits": 11}, 400, "between 0 and 10", "ExceededResourceQuota"),
    ({"scaleUnits": "two"}, 400, "scaleUnits", "BadRequest"),
])
def test_scale_validation(api: ApiClient, body: Any, status: int, fragment: str, code: str) -> None:
    endpoint = make(api, "scaly")
    accepted(api, action(api, endpoint, "Start"), endpoint["Id"])
    assert_refused(api, action(api, endpoint, "Scale", body), fragment, code=code, status=status)
    assert read(api, endpoint)["ScaleUnits"] == 0


def test_scale_units_may_arrive_as_a_string(api: ApiClient) -> None:
    endpoint = make(api, "stringy")
    accepted(api, action(api, endpoint, "Start"), endpoint["Id"])
    r = api.request("POST", f"{se_url(endpoint)}/Scale", b'{"scaleUnits":"4"}', **JSON)
    accepted(api, r, endpoint["Id"])
    assert read(api, endpoint)["ScaleUnits"] == 4


@pytest.mark.parametrize("method", ["MERGE", "PATCH", "PUT"])
def test_update_is_204_when_stopped_and_202_when_running(api: ApiClient, method: str) -> None:
    endpoint = make(api, "upd", Description="one")
    r = merge(api, endpoint, {"Description": "two"}, method)
    assert r.status_code == 204 and "operation-id" not in r.headers
    assert read(api, endpoint)["Description"] == "two"
    accepted(api, action(api, endpoint, "Start"), endpoint["Id"])
    accepted(api, merge(api, endpoint, {"Description": "three", "CacheControl": {"MaxAge": "60"}}, method),
             endpoint["Id"])
    got = read(api, endpoint)
    assert got["Description"] == "three" and got["CacheControl"]["MaxAge"] == "60"
    assert got["State"] == "Running"
    r = merge(api, endpoint, {"Description": "three"}, "MERGE")  # no change: nothing to do
    assert r.status_code == 204 and "operation-id" not in r.headers


# ---- settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["light", "verbose"])
def test_settings_round_trip(http: TestClient, account: Any, dialect: str) -> None:
    api = ApiClient.for_account(http, account, dialect)
    host = f"video-{uuid.uuid4().hex[:8]}.example.com"  # custom host names are unique in the whole database
    props = {
        "Name": "tuned",
        "CacheControl": {"MaxAge": "1800"},
        "AccessControl": {"IP": {"Allow": [{"Name": "office", "Address": "192.168.1.0", "SubnetPrefixLength": 24},
                                           {"Name": "all", "Address": "0.0.0.0", "SubnetPrefixLength": 0}]},
                          "Akamai": None},
        "CrossSiteAccessPolicies": {"ClientAccessPolicy": CLIENT_ACCESS, "CrossDomainPolicy": CROSS_DOMAIN},
        "CustomHostNames": [host.upper() + "."],
        "CdnProvider": "standardakamai",
        "StreamingEndpointVersion": "2.0",
    }
    endpoint = api.entity(api.request("POST", "StreamingEndpoints", json.dumps(props).encode(),
                                      **{"Content-Type": CONTENT_TYPE[dialect]}))
    got = read(api, endpoint)
    assert got["CacheControl"]["MaxAge"] == "1800"
    allow = items(got["AccessControl"]["IP"]["Allow"])
    assert [(a["Address"], a["SubnetPrefixLength"]) for a in allow] == [("192.168.1.0", 24), ("0.0.0.0", 0)]
    assert got["CrossSiteAccessPolicies"]["CrossDomainPolicy"] == CROSS_DOMAIN
    assert got["CrossSiteAccessPolicies"]["ClientAccessPolicy"] == CLIENT_ACCESS
    assert items(got["CustomHostNames"]) == [host]
    assert got["CdnProvider"] == "StandardAkamai"
    # clearing the custom host name frees it
    assert merge(api, endpoint, {"CustomHostNames": []}).status_code == 204
    assert make(api, "next", CustomHostNames=[host])["Name"] == "next"


BOMB = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><cross-domain-policy>&a;</cross-domain-policy>'


@pytest.mark.parametrize("props,status,fragment", [
    ({"AccessControl": {"IP": {"Allow": [{"Address": "300.1.1.1", "SubnetPrefixLength": 8}]}}}, 400,
     "AccessControl.IP.Allow[0].Address"),
    ({"AccessControl": {"IP": {"Allow": [{"Address": "fe80::1", "SubnetPrefixLength": 8}]}}}, 400, "IPv4"),
    ({"AccessControl": {"IP": {"Allow": [{"Address": "10.0.0.0", "SubnetPrefixLength": 33}]}}}, 400,
     "SubnetPrefixLength"),
    ({"AccessControl": {"Akamai": {"AkamaiSignatureHeaderAuthenticationKeyList": [
        {"Identifier": "id", "Expiration": "2030-01-01T00:00:00Z", "Base64Key": "not base64!"}]}}}, 400,
     "Base64Key"),
    ({"CrossSiteAccessPolicies": {"CrossDomainPolicy": "<cross-domain-policy>"}}, 400, "well-formed"),
    ({"CrossSiteAccessPolicies": {"CrossDomainPolicy": "<access-policy/>"}}, 400, "<cross-domain-policy>"),
    ({"CrossSiteAccessPolicies": {"ClientAccessPolicy": "<cross-domain-policy/>"}}, 400, "<access-policy>"),
    ({"CrossSiteAccessPolicies": {"CrossDomainPolicy": BOMB}}, 400, "entities"),
    ({"CacheControl": {"MaxAge": -1}}, 400, "MaxAge"),
    ({"CacheControl": {"MaxAge": "soon"}}, 400, "MaxAge"),
    ({"CustomHostNames": ["not a host"]}, 400, "CustomHostNames"),
    ({"CustomHostNames": ["localhost"]}, 400, "CustomHostNames"),
    ({"CustomHostNames": ["10.1.2.3"]}, 400, "CustomHostNames"),
    ({"CustomHostNames": ["a.example.com", "A.example.com"]}, 400, "twice"),
    ({"CustomHostNames": ["openams.test"]}, 400, "own host"),
    ({"CdnEnabled": True, "ScaleUnits": 1}, 412, "CDN"),
    ({"CdnProvider": "CheapCdn"}, 400, "CdnProvider"),
    ({"StreamingEndpointVersion": "3.0"}, 400, "StreamingEndpointVersion"),
    ({"StreamingEndpointVersion": "1.0", "CacheControl": {"MaxAge": 60}}, 400, "version 1.0"),
    ({"ScaleUnits": 11}, 400, "ScaleUnits"),
    ({"Description": "x" * 257}, 400, "Description"),
])
def test_bad_settings_are_refused(api: ApiClient, props: dict[str, Any], status: int, fragment: str) -> None:
    r = create(api, {"Name": "bad", **props}, expect=status)
    assert fragment in api.error(r)[1], api.error(r)
    assert len(api.list("StreamingEndpoints")) == 1
    # and the same on update of an existing endpoint
    endpoint = make(api, "good")
    props.pop("ScaleUnits", None)
    if props:
        r = merge(api, endpoint, props)
        assert r.status_code == status and fragment in api.error(r)[1], (r.status_code, r.text)


def test_version_1_endpoint_with_units_may_configure_everything(api: ApiClient) -> None:
    endpoint = make(api, "classic", StreamingEndpointVersion="1.0", ScaleUnits=1, CacheControl={"MaxAge": 60})
    assert endpoint["CacheControl"]["MaxAge"] == "60"


def test_custom_host_names_are_unique_across_accounts(api: ApiClient, other_account: Any) -> None:
    shared, more = (f"{n}-{uuid.uuid4().hex[:8]}.example.com" for n in ("shared", "more"))
    mine = make(api, "mine", CustomHostNames=[shared])
    assert merge(api, mine, {"CustomHostNames": [shared, more]}).status_code == 204
    r = create(api, {"Name": "again", "CustomHostNames": [shared]}, expect=409)
    assert_refused(api, r, shared, code="ResourceNameTaken", status=409)
    other = ApiClient.for_account(api.http, other_account)
    r = create(other, {"Name": "theirs", "CustomHostNames": [shared.upper()]}, expect=409)
    message = assert_refused(other, r, "already used", code="ResourceNameTaken", status=409)
    assert "mine" not in message and mine["Id"] not in message
    default = other.list("StreamingEndpoints")[0]
    r = merge(other, default, {"CustomHostNames": [more]})
    assert r.status_code == 409


# ---- isolation ------------------------------------------------------------------------------------------------


def test_another_account_cannot_see_or_drive_an_endpoint(api: ApiClient, other_account: Any) -> None:
    endpoint = make(api, "private", Description="secret-desc")
    r = action(api, endpoint, "Start")
    op_id = r.headers["operation-id"]
    intruder = ApiClient.for_account(api.http, other_account)
    for r in (intruder.get(se_url(endpoint)), action(intruder, endpoint, "Stop"),
              action(intruder, endpoint, "Scale", {"scaleUnits": 1}), intruder.delete(se_url(endpoint)),
              merge(intruder, endpoint, {"Description": "mine"}), intruder.get(f"Operations('{q(op_id)}')")):
        assert r.status_code == 404, (r.status_code, r.text)
        assert "secret-desc" not in r.text
    assert [e["Name"] for e in intruder.list("StreamingEndpoints")] == ["default"]
    assert all(o["TargetEntityId"] != endpoint["Id"] for o in intruder.list("Operations"))
    got = read(api, endpoint)
    assert got["State"] == "Running" and got["Description"] == "secret-desc"


# ---- host names with a base domain ------------------------------------------------------------------------


def test_host_names_follow_the_settings() -> None:
    plain = Settings(host="127.0.0.1", port=8700)
    assert host_name(plain, "acct", "default") == "127.0.0.1:8700"
    assert host_name(plain, "acct", "edge") == "127.0.0.1:8700"
    assert origin_base_url(plain, "acct") == "http://127.0.0.1:8700"
    prefixed = Settings(public_url="https://media.example.org/ams/")
    assert host_name(prefixed, "acct", "default") == "media.example.org"
    assert origin_base_url(prefixed, "acct") == "https://media.example.org/ams"
    domain = Settings(public_url="http://127.0.0.1:8700", base_domain="Localtest.ME.")
    assert host_name(domain, "acct", "default") == "acct.streaming.localtest.me"
    assert host_name(domain, "acct", "Edge-2") == "edge-2-acct.streaming.localtest.me"
    assert origin_base_url(domain, "acct") == "http://acct.streaming.localtest.me:8700"
    tls = Settings(public_url="https://api.example.org", base_domain="example.org")
    assert origin_base_url(tls, "acct") == "https://acct.streaming.example.org"


@pytest.fixture
def domain_runtime(runtime: Runtime) -> Any:
    rt = Runtime(replace(runtime.settings, base_domain="media.example"))
    rt.ready = True
    yield rt
    rt.engine.dispose()


def test_base_domain_host_names_and_locator_paths(domain_runtime: Runtime) -> None:
    account = _new_account(domain_runtime, "dom")
    http = TestClient(RestApp(domain_runtime), base_url="http://openams.test")
    api = ApiClient.for_account(http, account)
    default = api.list("StreamingEndpoints")[0]
    assert default["HostName"] == f"{account.name}.streaming.media.example"
    edge = make(api, "Edge-1")
    assert edge["HostName"] == f"edge-1-{account.name}.streaming.media.example"
    r = create(api, {"Name": "x", "CustomHostNames": ["foo.streaming.media.example"]}, expect=400)
    assert "own host" in api.error(r)[1]
    asset = api.create("Assets", "Asset", {"Name": "a"})
    policy = api.create("AccessPolicies", "AccessPolicy", {"Name": "r", "DurationInMinutes": 60.0, "Permissions": 1})
    loc = api.create("Locators", "Locator", {"Type": 2, "AssetId": asset["Id"], "AccessPolicyId": policy["Id"]})
    guid = loc["Id"].rsplit(":", 1)[1]
    assert loc["Path"] == f"http://{account.name}.streaming.media.example/{guid}/"
    assert loc["BaseUri"] == f"http://{account.name}.streaming.media.example"


def test_host_names_are_refreshed_when_the_settings_change(runtime: Runtime, domain_runtime: Runtime) -> None:
    from openams.db.store import Store
    from openams.entities.defaults import ensure_account_defaults
    from openams.model import MODEL

    account = _new_account(runtime, "moves")
    es = MODEL.entity_set("StreamingEndpoints")
    with domain_runtime.engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            ensure_account_defaults(conn, account, domain_runtime.settings)
            rows = Store(conn, account.id, MODEL).query(es, top=None)
    assert [r["HostName"] for r in rows] == [f"{account.name}.streaming.media.example"]


# ---- origin locators --------------------------------------------------------------------------------------


def _origin_locator(api: ApiClient, **extra: Any) -> Any:
    asset = api.create("Assets", "Asset", {"Name": "a"})
    policy = api.create("AccessPolicies", "AccessPolicy", {"Name": "r", "DurationInMinutes": 60.0, "Permissions": 1})
    body = {"Type": 2, "AssetId": asset["Id"], "AccessPolicyId": policy["Id"], **extra}
    return api.request("POST", "Locators", json.dumps(body).encode(), **JSON)


def test_origin_locator_path_is_on_the_default_endpoint(api: ApiClient) -> None:
    loc = _origin_locator(api).json()
    guid = loc["Id"].rsplit(":", 1)[1]
    host = api.list("StreamingEndpoints")[0]["HostName"]
    assert loc["Path"] == f"http://{host}/{guid}/"


def test_locator_ids_are_unique_across_accounts(api: ApiClient, other_account: Any) -> None:
    chosen = f"nb:lid:UUID:{uuid.uuid4()}"
    assert _origin_locator(api, Id=chosen).status_code == 201
    other = ApiClient.for_account(api.http, other_account)
    for taken in (chosen, chosen.upper().replace("NB:LID:UUID:", "nb:lid:UUID:")):
        r = _origin_locator(other, Id=taken)
        assert r.status_code == 409, r.text
        message = other.error(r)[1]
        assert "already taken" in message
        assert api.list("Locators")[0]["AssetId"] not in message
    assert other.list("Locators") == []
    r = _origin_locator(api, Id=chosen)  # in its own account too
    assert r.status_code == 409
