"""Tests for the OData v3 $batch reader and writer."""

from __future__ import annotations

import json

import pytest

from openams.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from openams.odata.batch import (
    BatchRequest,
    BatchResponse,
    ChangeSet,
    _read_head,
    _split_multipart,
    parse_batch,
    parse_media_type,
    reference_id,
    resolve_reference,
    write_batch,
)

BASE = "https://media.windows.net/api"
JOB_URL = f"{BASE}/Jobs('nb%3Ajid%3AUUID%3A1a2b3c4d-0000-1111-2222-333344445555')"

ATOM_JOB = (
    b'<?xml version="1.0" encoding="utf-8"?>\r\n'
    b'<entry xmlns="http://www.w3.org/2005/Atom" '
    b'xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices" '
    b'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">\r\n'
    b'  <category scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme" '
    b'term="Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job" />\r\n'
    b'  <link rel="http://schemas.microsoft.com/ado/2007/08/dataservices/related/InputMediaAssets" '
    b'type="application/atom+xml;type=feed" title="InputMediaAssets" '
    b"href=\"https://media.windows.net/api/Assets('nb%3Acid%3AUUID%3Aaaaa')\" />\r\n"
    b"  <title />\r\n  <updated>2026-01-05T10:00:00Z</updated>\r\n"
    b"  <author><name /></author>\r\n  <id />\r\n"
    b'  <content type="application/xml">\r\n    <m:properties>\r\n'
    b"      <d:Name>Encode my video</d:Name>\r\n"
    b'      <d:Priority m:type="Edm.Int32">0</d:Priority>\r\n'
    b'      <d:JobNotificationSubscriptions m:type="Collection(Microsoft.Cloud.Media.Vod.Rest.Data.'
    b'Models.JobNotificationSubscription)" />\r\n'
    b"    </m:properties>\r\n  </content>\r\n</entry>"
)


def _atom_task(name: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\r\n'
        '<entry xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices" '
        'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">\r\n'
        '  <content type="application/xml"><m:properties>'
        f"<d:Name>{name}</d:Name>"
        "<d:Configuration>Adaptive Streaming</d:Configuration>"
        "<d:MediaProcessorId>nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56</d:MediaProcessorId>"
        "<d:TaskBody>&lt;?xml version=\"1.0\" encoding=\"utf-16\"?&gt;&lt;taskBody&gt;"
        "&lt;inputAsset&gt;JobInputAsset(0)&lt;/inputAsset&gt;"
        "&lt;outputAsset&gt;JobOutputAsset(0)&lt;/outputAsset&gt;&lt;/taskBody&gt;</d:TaskBody>"
        "</m:properties></content>\r\n</entry>"
    ).encode()


def _crlf(*lines: str) -> bytes:
    return "\r\n".join(lines).encode()


def _dotnet_operation(url: str, content_id: str, body: bytes) -> bytes:
    head = _crlf(
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        f"POST {url} HTTP/1.1",
        f"Content-ID: {content_id}",
        "Content-Type: application/atom+xml;type=entry",
        "Accept: application/atom+xml,application/xml",
        "Accept-Charset: UTF-8",
        "DataServiceVersion: 1.0;NetFx",
        "MaxDataServiceVersion: 3.0;NetFx",
        "x-ms-version: 2.19",
        "",
        "",
    )
    return head + body


def _dotnet_batch() -> tuple[str, bytes, list[bytes]]:
    bodies = [ATOM_JOB, _atom_task("Task one"), _atom_task("Task two")]
    ops = [
        _dotnet_operation(f"{BASE}/Jobs", "1", bodies[0]),
        _dotnet_operation(f"{BASE}/$1/Tasks", "2", bodies[1]),
        _dotnet_operation(f"{BASE}/$1/Tasks", "3", bodies[2]),
    ]
    cs = b"".join(b"--changeset_9c1e\r\n" + op + b"\r\n" for op in ops) + b"--changeset_9c1e--\r\n"
    body = (
        b"--batch_5f2a\r\n"
        b"Content-Type: multipart/mixed; boundary=changeset_9c1e\r\n"
        b"\r\n" + cs + b"--batch_5f2a--\r\n"
    )
    return "multipart/mixed; boundary=batch_5f2a", body, bodies


# --------------------------------------------------------------------------------------------------
# Reading


def test_dotnet_sdk_job_submission() -> None:
    ctype, body, bodies = _dotnet_batch()
    items = parse_batch(ctype, body)
    assert len(items) == 1
    cs = items[0]
    assert isinstance(cs, ChangeSet)
    assert [r.method for r in cs.requests] == ["POST", "POST", "POST"]
    assert [r.url for r in cs.requests] == [f"{BASE}/Jobs", f"{BASE}/$1/Tasks", f"{BASE}/$1/Tasks"]
    assert [r.content_id for r in cs.requests] == ["1", "2", "3"]
    assert [r.body for r in cs.requests] == bodies
    job = cs.requests[0]
    assert job.header("content-type") == "application/atom+xml;type=entry"
    assert job.header("DATASERVICEVERSION") == "1.0;NetFx"
    assert job.headers["x-ms-version"] == "2.19"
    assert job.header("If-Match") is None
    assert job.http_version == "HTTP/1.1"
    assert "changeset part 2" in cs.requests[1].label
    # the task parts resolve against the job created by part 1
    ids = {"1": JOB_URL}
    assert resolve_reference(cs.requests[1].url, ids) == f"{JOB_URL}/Tasks"
    assert resolve_reference(cs.requests[0].url, ids) == f"{BASE}/Jobs"


def test_json_light_changeset_with_odata_bind_and_mime_content_ids() -> None:
    job = json.dumps({
        "Name": "json job",
        "InputMediaAssets@odata.bind": [f"{BASE}/Assets('nb%3Acid%3AUUID%3Abbbb')"],
    }).encode()
    task = b'{"Name":"t","Configuration":"H264 Multiple Bitrate 720p","MediaProcessorId":"nb:mpid:UUID:1",' \
           b'"TaskBody":"<taskBody><inputAsset>JobInputAsset(0)</inputAsset></taskBody>"}'
    body = _crlf(
        "--batch_json",
        "Content-Type: multipart/mixed; boundary=changeset_json",
        "",
        "--changeset_json",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "Content-ID: 1",
        "",
        "POST Jobs HTTP/1.1",
        "Content-Type: application/json",
        "Accept: application/json",
        "DataServiceVersion: 3.0",
        "",
        job.decode(),
        "--changeset_json",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "Content-ID: 2",
        "",
        "POST $1/Tasks HTTP/1.1",
        "Content-Type: application/json",
        "",
        task.decode(),
        "--changeset_json--",
        "--batch_json--",
        "",
    )
    (cs,) = parse_batch("multipart/mixed; boundary=batch_json", body)
    assert isinstance(cs, ChangeSet)
    first, second = cs.requests
    assert (first.method, first.url, first.content_id) == ("POST", "Jobs", "1")
    assert json.loads(first.body)["InputMediaAssets@odata.bind"][0].endswith("('nb%3Acid%3AUUID%3Abbbb')")
    assert first.body == job
    assert (second.url, second.content_id, second.body) == ("$1/Tasks", "2", task)
    assert resolve_reference(second.url, {"1": JOB_URL}) == f"{JOB_URL}/Tasks"


def test_lf_only_framing() -> None:
    body = (
        b"--batch_lf\n"
        b"Content-Type: multipart/mixed; boundary=changeset_lf\n"
        b"\n"
        b"--changeset_lf\n"
        b"Content-Type: application/http\n"
        b"Content-Transfer-Encoding: binary\n"
        b"\n"
        b"POST https://host/api/Assets HTTP/1.1\n"
        b"Content-ID: 1\n"
        b"Content-Type: application/json\n"
        b"\n"
        b'{"Name":"lf"}\n'
        b"--changeset_lf--\n"
        b"--batch_lf\n"
        b"Content-Type: application/http\n"
        b"Content-Transfer-Encoding: binary\n"
        b"\n"
        b"GET https://host/api/Assets HTTP/1.1\n"
        b"Accept: application/json\n"
        b"\n"
        b"--batch_lf--\n"
    )
    cs, get = parse_batch("multipart/mixed; boundary=batch_lf", body)
    assert isinstance(cs, ChangeSet) and isinstance(get, BatchRequest)
    assert cs.requests[0].body == b'{"Name":"lf"}'
    assert cs.requests[0].header("content-type") == "application/json"
    assert (get.method, get.url, get.body) == ("GET", "https://host/api/Assets", b"")
    assert get.header("accept") == "application/json"


def test_lf_framing_keeps_a_trailing_carriage_return_in_the_body() -> None:
    body = (
        b"--b\nContent-Type: multipart/mixed; boundary=c\n\n"
        b"--c\nContent-Type: application/http\n\nPUT Assets('x') HTTP/1.1\n\nabc\r\n"
        b"--c--\n--b--\n"
    )
    (cs,) = parse_batch("multipart/mixed; boundary=b", body)
    assert cs.requests[0].body == b"abc\r"


def test_quoted_boundaries_and_parameters() -> None:
    body = _crlf(
        "--batch:weird=1",
        'Content-Type: multipart/mixed; charset=utf-8; boundary="changeset;x y"',
        "",
        "--changeset;x y",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        "DELETE Locators('nb%3Alid%3AUUID%3A1') HTTP/1.1",
        "",
        "",
        "--changeset;x y--",
        "--batch:weird=1--",
    )
    (cs,) = parse_batch('Multipart/Mixed ; boundary="batch:weird=1" ; charset=utf-8', body)
    assert isinstance(cs, ChangeSet)
    assert cs.requests[0].method == "DELETE"
    assert cs.requests[0].url == "Locators('nb%3Alid%3AUUID%3A1')"
    assert cs.requests[0].body == b""


def test_preamble_epilogue_and_transport_padding() -> None:
    body = _crlf(
        "This is a preamble; it mentions --batch_p in the middle of a line and is ignored.",
        "--batch_p   ",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        "GET Assets HTTP/1.1",
        "",
        "",
        "--batch_p-- \t",
        "This is the epilogue.",
        "--batch_p",
        "Content-Type: application/http",
        "",
        "GET Ignored HTTP/1.1",
    )
    items = parse_batch("multipart/mixed; boundary=batch_p", body)
    assert len(items) == 1
    assert items[0].url == "Assets"  # type: ignore[union-attr]


def test_top_level_gets_around_a_changeset_in_order() -> None:
    body = _crlf(
        "--batch_m",
        "Content-Type: application/http",
        "Content-Transfer-Encoding:binary",
        "",
        "GET /service/Customers('ALFKI') ",  # the OData spec's own example: no HTTP version
        "Host: host",
        "",
        "--batch_m",
        "Content-Type: multipart/mixed; boundary=changeset_m",
        "",
        "--changeset_m",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        "MERGE https://host/api/Assets('nb%3Acid%3AUUID%3A1') HTTP/1.1",
        "Content-ID: 7",
        "Content-Type: application/json;odata=verbose",
        "",
        '{"Name":"renamed"}',
        "--changeset_m",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        "PATCH https://host/api/$7 HTTP/1.1",
        "Content-Type: application/json",
        "",
        '{"AlternateId":"a"}',
        "--changeset_m--",
        "",
        "--batch_m",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        "GET https://host/api/Assets?$filter=Name eq 'renamed'&$top=1 HTTP/1.1",
        "Accept: application/atom+xml",
        "",
        "",
        "--batch_m--",
    )
    first, cs, last = parse_batch("multipart/mixed; boundary=batch_m", body)
    assert isinstance(first, BatchRequest) and isinstance(cs, ChangeSet) and isinstance(last, BatchRequest)
    assert (first.method, first.url, first.header("host")) == ("GET", "/service/Customers('ALFKI')", "host")
    assert [r.method for r in cs.requests] == ["MERGE", "PATCH"]
    assert cs.requests[0].content_id == "7" and cs.requests[1].content_id is None
    assert last.url == "https://host/api/Assets?$filter=Name eq 'renamed'&$top=1"
    assert last.body == b""


def test_boundary_like_text_in_a_body_is_content() -> None:
    payload = (
        b"line one\r\n"
        b"--changeset_z-but-longer\r\n"
        b"--changeset_zz\r\n"
        b"x--changeset_z\r\n"
        b" --changeset_z\r\n"
        b"--batch_zX\r\n"
        b"--changeset_z---\r\n"
        b"--batch_z--oops\r\n"
        b"last line"
    )
    body = (
        b"--batch_z\r\n"
        b"Content-Type: multipart/mixed; boundary=changeset_z\r\n\r\n"
        b"--changeset_z\r\n"
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"PUT https://host/api/Assets('1') HTTP/1.1\r\nContent-Type: text/plain\r\n\r\n" + payload + b"\r\n"
        b"--changeset_z--\r\n"
        b"--batch_z--\r\n"
    )
    (cs,) = parse_batch("multipart/mixed; boundary=batch_z", body)
    assert cs.requests[0].body == payload


def test_binary_body_round_trip() -> None:
    payload = bytes(range(256)) + b"\r\n\r\n\n\r" + bytes(range(255, -1, -1)) + b"\r\n"
    body = (
        b"--b1\r\nContent-Type: multipart/mixed; boundary=c1\r\n\r\n"
        b"--c1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"PUT https://host/api/Assets('1')/$value HTTP/1.1\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n"
        b"--c1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"PUT https://host/api/Assets('2')/$value HTTP/1.1\r\n"
        b"Content-Length: 4\r\n\r\n" + b"\x00\r\n\xff" + b"\r\n\r\n"
        b"--c1--\r\n--b1--"
    )
    (cs,) = parse_batch("multipart/mixed; boundary=b1", body)
    assert cs.requests[0].body == payload
    assert cs.requests[1].body == b"\x00\r\n\xff"  # cut to Content-Length, extra CRLF dropped


def test_content_id_in_both_places_when_equal_and_folded_headers() -> None:
    body = _crlf(
        "--b", "Content-Type: multipart/mixed; boundary=c", "",
        "--c", "Content-Type: application/http", "Content-ID: 4", "",
        "POST Assets HTTP/1.1", "Content-ID: 4", "X-Long: first", "\tsecond", "X-Dup: a", "X-Dup: b",
        "", "{}",
        "--c--", "--b--",
    )
    (cs,) = parse_batch("multipart/mixed; boundary=b", body)
    op = cs.requests[0]
    assert op.content_id == "4"
    assert op.header("x-long") == "first second"
    assert op.header("x-dup") == "a, b"


def test_empty_batch_and_empty_changeset() -> None:
    assert parse_batch("multipart/mixed; boundary=b", b"--b--\r\n") == []
    (cs,) = parse_batch("multipart/mixed; boundary=b",
                        _crlf("--b", "Content-Type: multipart/mixed; boundary=c", "", "--c--", "--b--"))
    assert isinstance(cs, ChangeSet) and cs.requests == []


def test_parts_count_includes_changeset_operations() -> None:
    ops = "".join(
        f"--c\r\nContent-Type: application/http\r\n\r\n"
        f"POST Assets HTTP/1.1\r\nContent-ID: {i}\r\n\r\n{{}}\r\n"
        for i in range(5))
    body = f"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n{ops}--c--\r\n--b--".encode()
    assert len(parse_batch("multipart/mixed; boundary=b", body, max_parts=6)[0].requests) == 5  # type: ignore[union-attr]
    with pytest.raises(BadRequest, match="more than 5 parts"):
        parse_batch("multipart/mixed; boundary=b", body, max_parts=5)


# --------------------------------------------------------------------------------------------------
# Reading: errors


def _get_part(request_line: str) -> bytes:
    return _crlf("--b", "Content-Type: application/http", "Content-Transfer-Encoding: binary", "",
                 request_line, "", "", "--b--")


def _changeset(*ops: str, boundary: str = "c") -> bytes:
    inner = "".join(f"--{boundary}\r\n{op}\r\n" for op in ops)
    head = f"--b\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n"
    return f"{head}{inner}--{boundary}--\r\n--b--".encode()


def _op(request_line: str, *headers: str, body: str = "", content_id: str | None = None) -> str:
    mime = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        mime.append(f"Content-ID: {content_id}")
    return "\r\n".join([*mime, "", request_line, *headers, "", body])


@pytest.mark.parametrize("ctype", [
    "multipart/mixed",
    "multipart/mixed; charset=utf-8",
    'multipart/mixed; boundary=""',
])
def test_missing_boundary(ctype: str) -> None:
    with pytest.raises(BadRequest, match="without a boundary parameter"):
        parse_batch(ctype, _get_part("GET Assets HTTP/1.1"))


@pytest.mark.parametrize("ctype", ["application/json", "", "multipart/related; boundary=b"])
def test_not_multipart_mixed(ctype: str) -> None:
    with pytest.raises(UnsupportedMediaType, match="must be multipart/mixed"):
        parse_batch(ctype, _get_part("GET Assets HTTP/1.1"))


def test_unknown_boundary() -> None:
    with pytest.raises(BadRequest, match="no delimiter line '--other'") as info:
        parse_batch("multipart/mixed; boundary=other", _get_part("GET Assets HTTP/1.1"))
    assert info.value.status == 400


def test_truncated_batch() -> None:
    body = _get_part("GET Assets HTTP/1.1")
    with pytest.raises(BadRequest, match=r"truncated: batch part 1 is not followed by .*'--b--'"):
        parse_batch("multipart/mixed; boundary=b", body[: body.rindex(b"--b--")])


def test_truncated_changeset() -> None:
    body = _changeset(_op("POST Assets HTTP/1.1", body="{}"), _op("POST Assets HTTP/1.1", body="{}"))
    cut = body.replace(b"--c--\r\n", b"")
    with pytest.raises(BadRequest, match=r"changeset in batch part 1 is truncated: changeset part 2"):
        parse_batch("multipart/mixed; boundary=b", cut)


def test_missing_request_line() -> None:
    body = _changeset(_op("POST Assets HTTP/1.1", body="{}"),
                      "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\r\n")
    with pytest.raises(BadRequest, match=r"batch part 1, changeset part 2 has no request line"):
        parse_batch("multipart/mixed; boundary=b", body)


@pytest.mark.parametrize("line", [
    "POST",
    "POST HTTP/1.1",
    "POST Assets HTTP/one",
    "P(ST Assets HTTP/1.1",
])
def test_malformed_request_line(line: str) -> None:
    body = _changeset(_op(line, body="{}"))
    with pytest.raises(BadRequest, match=r"batch part 1, changeset part 1: malformed request line"):
        parse_batch("multipart/mixed; boundary=b", body)


def test_too_many_parts() -> None:
    part = b"--b\r\nContent-Type: application/http\r\n\r\nGET Assets HTTP/1.1\r\n\r\n"
    body = part * 4 + b"--b--"
    assert len(parse_batch("multipart/mixed; boundary=b", body, max_parts=4)) == 4
    with pytest.raises(BadRequest, match="more than 3 parts"):
        parse_batch("multipart/mixed; boundary=b", body, max_parts=3)


def test_oversized_part() -> None:
    body = _changeset(_op("POST Assets HTTP/1.1", body="x" * 500))
    parse_batch("multipart/mixed; boundary=b", body, max_part_bytes=1000)
    with pytest.raises(PayloadTooLarge, match=r"batch part 1, changeset part 1 is \d+ bytes") as info:
        parse_batch("multipart/mixed; boundary=b", body, max_part_bytes=400)
    assert info.value.status == 413


def test_get_inside_changeset() -> None:
    body = _changeset(_op("POST Assets HTTP/1.1", body="{}"), _op("GET Assets HTTP/1.1"))
    with pytest.raises(BadRequest, match=r"batch part 1, changeset part 2 is a GET"):
        parse_batch("multipart/mixed; boundary=b", body)


@pytest.mark.parametrize("method", ["POST", "DELETE", "MERGE"])
def test_non_get_at_top_level(method: str) -> None:
    body = _crlf("--b", _op("GET Assets HTTP/1.1"),
                 "--b", _op(f"{method} Assets HTTP/1.1", body="{}"), "--b--")
    with pytest.raises(BadRequest, match=rf"batch part 2 is a {method} outside a changeset"):
        parse_batch("multipart/mixed; boundary=b", body)


def test_unknown_method_in_changeset() -> None:
    with pytest.raises(BadRequest, match="method 'TRACE'"):
        parse_batch("multipart/mixed; boundary=b", _changeset(_op("TRACE Assets HTTP/1.1")))


def test_nested_changeset() -> None:
    nested = ("Content-Type: multipart/mixed; boundary=d\r\n\r\n--d\r\n"
              + _op("POST Assets HTTP/1.1") + "\r\n--d--")
    with pytest.raises(BadRequest, match=r"batch part 1, changeset part 1 is a nested changeset"):
        parse_batch("multipart/mixed; boundary=b", _changeset(nested))


def test_changeset_without_boundary() -> None:
    body = _crlf("--b", "Content-Type: multipart/mixed", "",
                 "--c", _op("POST Assets HTTP/1.1"), "--c--", "--b--")
    with pytest.raises(BadRequest, match="batch part 1 has Content-Type 'multipart/mixed' without a bound"):
        parse_batch("multipart/mixed; boundary=b", body)


def test_part_without_content_type() -> None:
    body = _crlf("--b", "Content-Transfer-Encoding: binary", "", "GET Assets HTTP/1.1", "", "--b--")
    with pytest.raises(BadRequest, match="batch part 1 has no Content-Type header"):
        parse_batch("multipart/mixed; boundary=b", body)


def test_part_with_wrong_content_type() -> None:
    body = _crlf("--b", "Content-Type: application/json", "", "{}", "--b--")
    with pytest.raises(BadRequest, match="batch part 1 has Content-Type 'application/json'"):
        parse_batch("multipart/mixed; boundary=b", body)


def test_base64_transfer_encoding_rejected() -> None:
    body = _crlf("--b", "Content-Type: application/http", "Content-Transfer-Encoding: base64", "",
                 "R0VUIEFzc2V0cyBIVFRQLzEuMQ==", "--b--")
    with pytest.raises(BadRequest, match="batch part 1 has Content-Transfer-Encoding 'base64'"):
        parse_batch("multipart/mixed; boundary=b", body)


def test_missing_blank_line_after_part_headers() -> None:
    body = _crlf("--b", "Content-Type: application/http", "GET https://host/api/Assets HTTP/1.1", "",
                 "--b--")
    with pytest.raises(BadRequest, match=r"batch part 1: 'GET https://host/api/Assets HTTP/1.1' is not a"):
        parse_batch("multipart/mixed; boundary=b", body)


def test_reference_to_unknown_content_id() -> None:
    body = _changeset(_op("POST Jobs HTTP/1.1", "Content-ID: 1", body="{}"),
                      _op("POST $2/Tasks HTTP/1.1", "Content-ID: 2", body="{}"))
    with pytest.raises(BadRequest, match=r"changeset part 2 refers to \$2, but no earlier operation"):
        parse_batch("multipart/mixed; boundary=b", body)


def test_duplicate_content_id() -> None:
    body = _changeset(_op("POST Jobs HTTP/1.1", "Content-ID: 1", body="{}"),
                      _op("POST Jobs HTTP/1.1", body="{}", content_id="1"))
    with pytest.raises(BadRequest, match="changeset part 2 repeats Content-ID '1'"):
        parse_batch("multipart/mixed; boundary=b", body)


def test_conflicting_content_ids() -> None:
    body = _changeset(_op("POST Jobs HTTP/1.1", "Content-ID: 2", body="{}", content_id="1"))
    with pytest.raises(BadRequest, match="two different Content-IDs"):
        parse_batch("multipart/mixed; boundary=b", body)


@pytest.mark.parametrize("length, message", [("99", "Content-Length says 99 bytes"), ("ten", "not a number")])
def test_bad_content_length(length: str, message: str) -> None:
    body = _changeset(_op("POST Jobs HTTP/1.1", f"Content-Length: {length}", body="{}"))
    with pytest.raises(BadRequest, match=message):
        parse_batch("multipart/mixed; boundary=b", body)


# --------------------------------------------------------------------------------------------------
# parse_media_type


def test_parse_media_type() -> None:
    assert parse_media_type('Multipart/Mixed; Boundary="a\\"b;c"; x=1') == (
        "multipart/mixed", {"boundary": 'a"b;c', "x": "1"})
    assert parse_media_type("application/atom+xml;type=entry;charset=utf-8") == (
        "application/atom+xml", {"type": "entry", "charset": "utf-8"})
    assert parse_media_type("") == ("", {})
    assert parse_media_type("text/plain;;flag") == ("text/plain", {"flag": ""})


# --------------------------------------------------------------------------------------------------
# References


@pytest.mark.parametrize("url, expected", [
    ("$1/Tasks", f"{JOB_URL}/Tasks"),
    ("$1", JOB_URL),
    ("$1?$select=Name", f"{JOB_URL}?$select=Name"),
    ("%241/Tasks", f"{JOB_URL}/Tasks"),
    (f"{BASE}/$1/Tasks", f"{JOB_URL}/Tasks"),
    ("/api/$1/$links/InputMediaAssets", f"{JOB_URL}/$links/InputMediaAssets"),
    (f"{BASE}//$1/Tasks", f"{JOB_URL}/Tasks"),
    ("$job/Tasks", f"{JOB_URL}/Tasks"),
])
def test_resolve_reference(url: str, expected: str) -> None:
    assert resolve_reference(url, {"1": JOB_URL, "job": JOB_URL + "/"}) == expected


@pytest.mark.parametrize("url", [
    "Assets",
    f"{BASE}/Jobs",
    "$metadata",
    f"{BASE}/$metadata",
    f"{BASE}/Jobs('x')/$links/Tasks",
    f"{BASE}/Assets/$count",
    "Assets?$filter=Name eq '$1'",
    f"{BASE}/Assets('$1')",
])
def test_urls_without_reference_are_unchanged(url: str) -> None:
    assert reference_id(url) is None
    assert resolve_reference(url, {"1": JOB_URL}) == url


def test_resolve_reference_with_base() -> None:
    ids = {"1": JOB_URL}
    assert resolve_reference("https://HOST/api/$1/Tasks", ids, base="https://host/api/") == f"{JOB_URL}/Tasks"
    # with a base, only the first segment after it counts
    assert reference_id("https://host/api/Jobs/$1", base="https://host/api") is None
    assert reference_id("https://host/api/$2", base="https://host/api") == "2"


def test_resolve_unknown_reference() -> None:
    with pytest.raises(BadRequest, match=r"refers to \$3, but no earlier operation .* Content-ID 3"):
        resolve_reference(f"{BASE}/$3/Tasks", {"1": JOB_URL})


# --------------------------------------------------------------------------------------------------
# Writing


def _reparse(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart body into (lower-cased MIME headers, content) using the reader's framing."""
    media, params = parse_media_type(content_type)
    assert media == "multipart/mixed"
    parts = _split_multipart(body, params["boundary"], "response", "part", [10_000], 10_000)
    out = []
    for content in parts:
        pairs, at = _read_head(content, 0, "response part", "headers")
        out.append(({k.lower(): v for k, v in pairs}, content[at:]))
    return out


def _response(content: bytes) -> tuple[str, dict[str, str], bytes]:
    status_line, _, rest = content.partition(b"\r\n")
    pairs, at = _read_head(rest, 0, "embedded response", "headers")
    return status_line.decode(), {k.lower(): v for k, v in pairs}, rest[at:]


def test_write_changeset_response() -> None:
    entries = [b"<entry>job</entry>", b"<entry>task 1</entry>\r\n", b"<entry>task 2</entry>"]
    locations = [JOB_URL, f"{BASE}/Tasks('t1')", f"{BASE}/Tasks('t2')"]
    changeset = [
        BatchResponse(201, [("Location", loc), ("DataServiceVersion", "1.0;"),
                            ("Content-Type", "application/atom+xml;type=entry;charset=utf-8")],
                      body, content_id=str(i))
        for i, (loc, body) in enumerate(zip(locations, entries, strict=True), start=1)
    ]
    ctype, body = write_batch([changeset])
    assert ctype.startswith("multipart/mixed; boundary=batchresponse_")
    assert b"\n" not in body.replace(b"\r\n", b"")  # CRLF only
    (outer,) = _reparse(ctype, body)
    outer_headers, nested = outer
    assert outer_headers["content-type"].startswith("multipart/mixed; boundary=changesetresponse_")
    inner = _reparse(outer_headers["content-type"], nested)
    assert len(inner) == 3
    for i, (mime, content) in enumerate(inner):
        assert mime == {"content-type": "application/http", "content-transfer-encoding": "binary"}
        status, headers, entity = _response(content)
        assert status == "HTTP/1.1 201 Created"
        assert headers["content-id"] == str(i + 1)
        assert headers["location"] == locations[i]
        assert headers["content-length"] == str(len(entries[i]))
        assert entity == entries[i]
    assert body.endswith(b"--\r\n")


def test_write_mixed_responses_and_failed_changeset() -> None:
    payload = bytes(range(256)) + b"\r\n--batchresponse_fake\r\n"
    items: list[BatchResponse | list[BatchResponse]] = [
        BatchResponse(200, [("Content-Type", "application/octet-stream")], payload),
        [BatchResponse(204, content_id="1"), BatchResponse(204, [("Content-ID", "2")], content_id="2")],
        BatchResponse(404, [("Content-Type", "application/json")], b'{"odata.error":{}}'),
        BatchResponse(299, reason="Custom Thing"),
    ]
    ctype, body = write_batch(items)
    parts = _reparse(ctype, body)
    assert len(parts) == 4
    status, _headers, entity = _response(parts[0][1])
    assert (status, entity) == ("HTTP/1.1 200 OK", payload)
    inner = _reparse(parts[1][0]["content-type"], parts[1][1])
    statuses = [_response(c) for _, c in inner]
    assert [s for s, _, _ in statuses] == ["HTTP/1.1 204 No Content"] * 2
    assert statuses[0][1] == {"content-id": "1"} and statuses[0][2] == b""
    assert inner[1][1].count(b"Content-ID") == 1  # not duplicated
    assert _response(parts[2][1])[0] == "HTTP/1.1 404 Not Found"
    assert _response(parts[3][1])[0] == "HTTP/1.1 299 Custom Thing"


def test_write_rejects_header_injection() -> None:
    with pytest.raises(ValueError, match="unsafe header"):
        write_batch([BatchResponse(200, [("X-Evil", "a\r\nInjected: 1")])])
    with pytest.raises(ValueError, match="unsafe header"):
        write_batch([BatchResponse(201, content_id="1\r\nX: y")])


def test_written_changeset_response_reads_back_with_parse_framing() -> None:
    """The writer's framing is the reader's: a response can be re-read as a batch of parts."""
    ctype, body = write_batch([[BatchResponse(201, [("Location", JOB_URL)], b"{}", content_id="1")]])
    # turn the status line into a request line so the request reader accepts the same framing
    fake = body.replace(b"HTTP/1.1 201 Created", b"POST Jobs HTTP/1.1")
    (cs,) = parse_batch(ctype, fake)
    assert isinstance(cs, ChangeSet)
    (op,) = cs.requests
    assert (op.content_id, op.header("location"), op.body) == ("1", JOB_URL, b"{}")
