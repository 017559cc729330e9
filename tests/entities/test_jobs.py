"""Job submission: deep insert, $batch (SDK shape), templates, validation, cancel, output assets."""

from __future__ import annotations

import json
from urllib.parse import quote

from tests.support.client import BASE, ApiClient, key_url

MES = "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56"
BODY = ('<?xml version="1.0" encoding="utf-16"?>\n<taskBody>\n  <inputAsset>JobInputAsset(0)</inputAsset>\n'
        '  <outputAsset assetName="out-{n}">JobOutputAsset({n})</outputAsset>\n</taskBody>')


def q(key: str) -> str:
    return quote(key, safe="")


def _input(api: ApiClient, name: str = "in") -> dict:
    asset = api.create("Assets", "Asset", {"Name": name})
    api.create("Files", "AssetFile", {"Name": "in.mp4", "ParentAssetId": asset["Id"], "IsPrimary": True})
    return asset


def _post(api: ApiClient, path: str, body: dict, verbose: bool = True, expect: int = 201) -> dict:
    ctype = "application/json;odata=verbose" if verbose else "application/json"
    r = api.request("POST", path, json.dumps(body).encode(), **{"Content-Type": ctype,
                                                                 "Accept": "application/json"})
    assert r.status_code == expect, r.text
    return r.json() if r.content else {}


def test_deep_insert_verbose_creates_outputs_and_links(api: ApiClient) -> None:
    src = _input(api)
    job = _post(api, "Jobs", {"Name": "j1", "InputMediaAssets": [{"__metadata": {"uri": key_url("Assets", src["Id"])}}],
                              "Tasks": [{"Configuration": "Adaptive Streaming", "MediaProcessorId": MES,
                                         "TaskBody": BODY.format(n=0)}]})
    assert job["State"] == 0 and job["Id"].startswith("nb:jid:UUID:")
    outs = api.list(f"Jobs('{q(job['Id'])}')/OutputMediaAssets()")
    assert [o["Name"] for o in outs] == ["out-0"]
    tasks = api.list(f"Jobs('{q(job['Id'])}')/Tasks")
    assert len(tasks) == 1 and tasks[0]["State"] == 0 and tasks[0]["ErrorDetails"] == []
    assert [a["Id"] for a in api.list(f"Tasks('{q(tasks[0]['Id'])}')/InputMediaAssets")] == [src["Id"]]
    assert [a["Id"] for a in api.list(f"Tasks('{q(tasks[0]['Id'])}')/OutputMediaAssets")] == [outs[0]["Id"]]
    assert [a["Id"] for a in api.list(f"Assets('{q(outs[0]['Id'])}')/ParentAssets")] == [src["Id"]]
    r = api.get(f"Jobs('{q(job['Id'])}')/State", Accept="application/json;odata=verbose")
    assert r.json() == {"d": {"State": 0}}


def test_light_bind_and_default_output_name(api: ApiClient) -> None:
    src = _input(api)
    body = BODY.replace(' assetName="out-{n}"', "").format(n=0)
    job = _post(api, "Jobs", {"Name": "named", "InputMediaAssets@odata.bind": [key_url("Assets", src["Id"])],
                              "Tasks": [{"MediaProcessorId": MES, "Configuration": "H264 Multiple Bitrate 720p",
                                         "TaskBody": body}]}, verbose=False)
    outs = api.list(f"Jobs('{q(job['Id'])}')/OutputMediaAssets")
    assert outs[0]["Name"] == "JobOutputAsset(0)_named"


def test_chained_tasks_and_validation_errors(api: ApiClient) -> None:
    src = _input(api)
    chain = [
        {"MediaProcessorId": MES, "Configuration": "Adaptive Streaming", "TaskBody": BODY.format(n=0)},
        {"MediaProcessorId": MES, "Configuration": "AAC Audio",
         "TaskBody": "<taskBody><inputAsset>JobOutputAsset(0)</inputAsset>"
                     "<outputAsset>JobOutputAsset(1)</outputAsset></taskBody>"},
    ]
    src_ref = [{"__metadata": {"uri": key_url("Assets", src["Id"])}}]
    job = _post(api, "Jobs", {"Name": "chain", "InputMediaAssets": src_ref,
                              "Tasks": chain})
    assert len(api.list(f"Jobs('{q(job['Id'])}')/OutputMediaAssets")) == 2
    before = len(api.list("Assets"))
    cases = [
        ([], "at least one task"),
        ([{"MediaProcessorId": MES, "TaskBody": "<taskBody><inputAsset>JobInputAsset(3)</inputAsset>"
           "<outputAsset>JobOutputAsset(0)</outputAsset></taskBody>"}], "JobInputAsset(3) does not exist"),
        ([{"MediaProcessorId": MES, "TaskBody": "<taskBody><inputAsset>JobOutputAsset(0)</inputAsset>"
           "<outputAsset>JobOutputAsset(0)</outputAsset></taskBody>"}], "cycle"),
        ([{"MediaProcessorId": MES, "TaskBody": "<taskBody><inputAsset>JobInputAsset(0)"}], "not valid XML"),
        ([{"MediaProcessorId": "nb:mpid:UUID:00000000-0000-0000-0000-000000000000",
           "TaskBody": BODY.format(n=0)}], "not a media processor"),
    ]
    for tasks, message in cases:
        r = api.request("POST", "Jobs", json.dumps({"InputMediaAssets": [{"__metadata": {"uri": key_url(
            "Assets", src["Id"])}}], "Tasks": tasks}).encode(),
            **{"Content-Type": "application/json;odata=verbose"})
        assert r.status_code == 400, (message, r.text)
        assert message in api.error(r)[1]
    assert len(api.list("Assets")) == before  # no output asset leaked from refused jobs


def test_sdk_batch_job_with_atom_parts(api: ApiClient) -> None:
    src = _input(api)
    ns = ('xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices" '
          'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"')
    job_entry = (f'<?xml version="1.0" encoding="utf-8"?><entry {ns}>'
                 '<category term="Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job" '
                 'scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"/>'
                 f'<link rel="http://schemas.microsoft.com/ado/2007/08/dataservices/related/InputMediaAssets" '
                 f'type="application/atom+xml;type=feed" title="InputMediaAssets" '
                 f'href="{key_url("Assets", src["Id"])}"/>'
                 '<content type="application/xml"><m:properties><d:Created m:type="Edm.DateTime">'
                 '0001-01-01T00:00:00</d:Created><d:Id m:null="true"/><d:Name>sdk-job</d:Name>'
                 '<d:Priority m:type="Edm.Int32">0</d:Priority>'
                 '<d:State m:type="Edm.Int32">0</d:State><d:JobNotificationSubscriptions m:type="Collection('
                 'Microsoft.Cloud.Media.Vod.Rest.Data.Models.JobNotificationSubscription)"/></m:properties></content>'
                 '</entry>')
    body_xml = BODY.format(n=0).replace("<", "&lt;").replace(">", "&gt;")
    task_entry = (f'<?xml version="1.0" encoding="utf-8"?><entry {ns}>'
                  '<category term="Microsoft.Cloud.Media.Vod.Rest.Data.Models.Task" '
                  'scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"/>'
                  '<content type="application/xml"><m:properties><d:Configuration>Adaptive Streaming</d:Configuration>'
                  '<d:Id></d:Id><d:ErrorDetails m:type="Collection(Microsoft.Cloud.Media.Vod.Rest.Data.Models.'
                  f'ErrorDetail)"/><d:MediaProcessorId>{MES}</d:MediaProcessorId><d:Name>t1</d:Name>'
                  '<d:Options m:type="Edm.Int32">0</d:Options><d:Progress m:type="Edm.Double">0</d:Progress>'
                  f'<d:TaskBody>{body_xml}</d:TaskBody></m:properties></content></entry>')

    def part(method: str, url: str, cid: int, body: str) -> str:
        return (f"--changeset_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                f"{method} {url} HTTP/1.1\r\nContent-ID: {cid}\r\nContent-Type: application/atom+xml;type=entry\r\n"
                f"DataServiceVersion: 3.0\r\n\r\n{body}\r\n")

    payload = ("--batch_x\r\nContent-Type: multipart/mixed; boundary=changeset_x\r\n\r\n"
               + part("POST", f"{BASE}Jobs", 1, job_entry) + part("POST", f"{BASE}$1/Tasks", 2, task_entry)
               + "--changeset_x--\r\n--batch_x--\r\n")
    r = api.request("POST", "$batch", payload.encode(), **{"Content-Type": "multipart/mixed; boundary=batch_x",
                                                           "Accept": "multipart/mixed"})
    assert r.status_code == 202 and r.text.count("201 Created") == 2, r.text
    job = api.list("Jobs?$filter=Name eq 'sdk-job'")[0]
    assert len(api.list(f"Jobs('{q(job['Id'])}')/Tasks")) == 1
    assert len(api.list(f"Jobs('{q(job['Id'])}')/OutputMediaAssets")) == 1


def test_cancel_queued_job_and_final_state_refusal(api: ApiClient) -> None:
    src = _input(api)
    job = _post(api, "Jobs", {"InputMediaAssets": [{"__metadata": {"uri": key_url("Assets", src["Id"])}}],
                              "Tasks": [{"MediaProcessorId": MES, "TaskBody": BODY.format(n=0)}]})
    r = api.get(f"CancelJob?jobid='{q(job['Id'])}'")
    assert r.status_code == 204, r.text
    assert api.entity(api.get(f"Jobs('{q(job['Id'])}')"))["State"] == 5
    assert all(t["State"] == 5 for t in api.list(f"Jobs('{q(job['Id'])}')/Tasks"))
    r = api.get(f"CancelJob?jobid='{q(job['Id'])}'")
    assert r.status_code == 400 and "Canceled" in api.error(r)[1]
    assert api.get("CancelJob?jobid='nb%3Ajid%3AUUID%3A00000000-0000-0000-0000-000000000000'").status_code == 404
    assert api.delete(f"Jobs('{q(job['Id'])}')").status_code == 204


def test_job_template_flow(api: ApiClient) -> None:
    src = _input(api)
    tt = "nb:ttid:UUID:071370A3-E63E-4E81-A099-AD66BCAC3789"
    tmpl = _post(api, "JobTemplates", {
        "Name": "tmpl", "TemplateType": "1",
        "JobTemplateBody": f'<?xml version="1.0" encoding="utf-8"?><jobTemplate><taskBody taskTemplateId="{tt}">'
                           "<inputAsset>JobInputAsset(0)</inputAsset><outputAsset>JobOutputAsset(0)</outputAsset>"
                           "</taskBody></jobTemplate>",
        "TaskTemplates": [{"Id": tt, "Configuration": "H264 Multiple Bitrate 720p", "MediaProcessorId": MES,
                           "Name": "tt", "NumberofInputAssets": 1, "NumberofOutputAssets": 1}]})
    assert len(api.list(f"JobTemplates('{q(tmpl['Id'])}')/TaskTemplates")) == 1
    job = _post(api, "Jobs", {"Name": "from-template", "TemplateId": tmpl["Id"],
                              "InputMediaAssets": [{"__metadata": {"uri": key_url("Assets", src["Id"])}}]})
    tasks = api.list(f"Jobs('{q(job['Id'])}')/Tasks")
    assert len(tasks) == 1 and tasks[0]["Configuration"] == "H264 Multiple Bitrate 720p"
    assert len(api.list(f"Jobs('{q(job['Id'])}')/OutputMediaAssets")) == 1


def test_notification_subscription_rules(api: ApiClient) -> None:
    src = _input(api)
    ep = _post(api, "NotificationEndPoints", {"Name": "hook", "EndPointType": 3,
                                              "EndPointAddress": "http://127.0.0.1:9/hook"})
    base = {"InputMediaAssets": [{"__metadata": {"uri": key_url("Assets", src["Id"])}}],
            "Tasks": [{"MediaProcessorId": MES, "TaskBody": BODY.format(n=0)}]}
    r = api.request("POST", "Jobs", json.dumps({**base, "JobNotificationSubscriptions": [
        {"NotificationEndPointId": ep["Id"], "TargetJobState": 0}]}).encode(),
        **{"Content-Type": "application/json;odata=verbose"})
    assert r.status_code == 400 and "must not be 0" in api.error(r)[1]
    job = _post(api, "Jobs", {**base, "JobNotificationSubscriptions": [
        {"NotificationEndPointId": ep["Id"], "TargetJobState": 2}]})
    assert job["JobNotificationSubscriptions"][0]["TargetJobState"] == 2
