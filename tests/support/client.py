"""A small OData client for tests that speaks JSON light, JSON verbose or Atom, so one test can
run the same request sequence in every dialect and compare what a user sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from lxml import etree
from starlette.testclient import TestClient

NS = {
    "a": "http://www.w3.org/2005/Atom",
    "d": "http://schemas.microsoft.com/ado/2007/08/dataservices",
    "m": "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata",
}
REL = "http://schemas.microsoft.com/ado/2007/08/dataservices/related/"
TYPE_NS = "Microsoft.Cloud.Media.Vod.Rest.Data.Models"
BASE = "http://openams.test/api/"

ACCEPT = {
    "light": "application/json",
    "verbose": "application/json;odata=verbose",
    "atom": "application/atom+xml,application/xml",
}
CONTENT_TYPE = {
    "light": "application/json",
    "verbose": "application/json;odata=verbose",
    "atom": "application/atom+xml;type=entry;charset=utf-8",
}


def key_url(set_name: str, key: str) -> str:
    return f"{BASE}{set_name}('{quote(key, safe='')}')"


def token_for(http: TestClient, name: str, key: str) -> str:
    r = http.post("/v2/OAuth2-13", data={"grant_type": "client_credentials", "client_id": name,
                                         "client_secret": key, "scope": "urn:WindowsAzureMediaServices"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _atom_value(el: etree._Element) -> Any:
    if el.get(f"{{{NS['m']}}}null") == "true":
        return None
    mtype = el.get(f"{{{NS['m']}}}type", "Edm.String")
    if mtype.startswith("Collection("):
        return [_atom_value(c) if len(c) == 0 else {etree.QName(x).localname: _atom_value(x) for x in c}
                for c in el]
    if len(el):
        return {etree.QName(x).localname: _atom_value(x) for x in el}
    text = el.text or ""
    if mtype in ("Edm.Int32", "Edm.Int16", "Edm.Byte"):
        return int(text)
    if mtype == "Edm.Int64":
        return text  # as JSON light writes it
    if mtype == "Edm.Double":
        return float(text)
    if mtype == "Edm.Boolean":
        return text == "true"
    return text


@dataclass
class ApiClient:
    http: TestClient
    token: str
    dialect: str = "light"
    extra_headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_account(cls, http: TestClient, account: Any, dialect: str = "light") -> ApiClient:
        return cls(http, token_for(http, account.name, account.primary_key), dialect)

    def headers(self, **extra: str) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}", "x-ms-version": "2.19", "Accept": ACCEPT[self.dialect],
             "DataServiceVersion": "3.0", "MaxDataServiceVersion": "3.0", **self.extra_headers}
        h.update(extra)
        return h

    # raw verbs -----------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
        url = path if path.startswith("http") else "/api/" + path.lstrip("/")
        return self.http.request(method, url, content=body, headers=self.headers(**headers))

    def get(self, path: str, **headers: str) -> Any:
        return self.request("GET", path, **headers)

    def delete(self, path: str, **headers: str) -> Any:
        return self.request("DELETE", path, **headers)

    # entity payloads ----------------------------------------------------------------------------
    def encode(self, type_name: str, props: dict[str, Any], links: dict[str, list[str]] | None = None) -> bytes:
        links = links or {}
        if self.dialect == "light":
            import json

            body = dict(props)
            for nav, urls in links.items():
                body[f"{nav}@odata.bind"] = urls if len(urls) > 1 or nav.endswith("s") else urls[0]
            return json.dumps(body).encode()
        if self.dialect == "verbose":
            import json

            body = dict(props)
            for nav, urls in links.items():
                refs = [{"__metadata": {"uri": u}} for u in urls]
                body[nav] = refs if nav.endswith("s") else refs[0]
            return json.dumps(body).encode()
        entry = etree.Element(f"{{{NS['a']}}}entry", nsmap={None: NS["a"], "d": NS["d"], "m": NS["m"]})
        etree.SubElement(entry, f"{{{NS['a']}}}category", term=f"{TYPE_NS}.{type_name}",
                         scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme")
        for nav, urls in links.items():
            for u in urls:
                etree.SubElement(entry, f"{{{NS['a']}}}link", rel=REL + nav, href=u,
                                 type="application/atom+xml;type=entry", title=nav)
        content = etree.SubElement(entry, f"{{{NS['a']}}}content", type="application/xml")
        mprops = etree.SubElement(content, f"{{{NS['m']}}}properties")
        for name, value in props.items():
            el = etree.SubElement(mprops, f"{{{NS['d']}}}{name}")
            if value is None:
                el.set(f"{{{NS['m']}}}null", "true")
            elif isinstance(value, bool):
                el.set(f"{{{NS['m']}}}type", "Edm.Boolean")
                el.text = "true" if value else "false"
            elif isinstance(value, int):
                el.set(f"{{{NS['m']}}}type", "Edm.Int32")
                el.text = str(value)
            elif isinstance(value, float):
                el.set(f"{{{NS['m']}}}type", "Edm.Double")
                el.text = repr(value)
            else:
                el.text = str(value)
        return etree.tostring(entry, xml_declaration=True, encoding="utf-8")

    def create(self, set_name: str, type_name: str, props: dict[str, Any],
               links: dict[str, list[str]] | None = None, expect: int = 201) -> dict[str, Any]:
        r = self.request("POST", set_name, self.encode(type_name, props, links),
                         **{"Content-Type": CONTENT_TYPE[self.dialect]})
        assert r.status_code == expect, (r.status_code, r.text)
        return self.entity(r) if expect == 201 else {}

    def update(self, set_name: str, key: str, type_name: str, props: dict[str, Any], method: str = "MERGE",
               expect: int = 204) -> Any:
        r = self.request(method, f"{set_name}('{quote(key, safe='')}')", self.encode(type_name, props),
                         **{"Content-Type": CONTENT_TYPE[self.dialect]})
        assert r.status_code == expect, (r.status_code, r.text)
        return r

    # decoding -----------------------------------------------------------------------------------
    def entity(self, r: Any) -> dict[str, Any]:
        if self.dialect == "light":
            data = r.json()
            return {k: v for k, v in data.items() if not k.startswith("odata.")}
        if self.dialect == "verbose":
            d = r.json()["d"]
            return {k: v for k, v in d.items() if k != "__metadata" and not (isinstance(v, dict) and "__deferred" in v)}
        root = etree.fromstring(r.content)
        return self._atom_entry(root)

    def _atom_entry(self, entry: etree._Element) -> dict[str, Any]:
        props = entry.find("a:content/m:properties", NS)
        assert props is not None
        return {etree.QName(p).localname: _atom_value(p) for p in props}

    def feed(self, r: Any) -> list[dict[str, Any]]:
        assert r.status_code == 200, (r.status_code, r.text)
        if self.dialect == "light":
            return [{k: v for k, v in e.items() if not k.startswith("odata.")} for e in r.json()["value"]]
        if self.dialect == "verbose":
            return [{k: v for k, v in e.items()
                     if k != "__metadata" and not (isinstance(v, dict) and "__deferred" in v)}
                    for e in r.json()["d"]["results"]]
        root = etree.fromstring(r.content)
        return [self._atom_entry(e) for e in root.findall("a:entry", NS)]

    def list(self, path: str) -> list[dict[str, Any]]:
        return self.feed(self.get(path))

    def error(self, r: Any) -> tuple[str, str]:
        """(code, message) from an OData error body in any dialect."""
        ctype = r.headers.get("content-type", "")
        if "json" in ctype:
            data = r.json()
            err = data.get("odata.error") or data.get("error")
            return err["code"], err["message"]["value"]
        root = etree.fromstring(r.content)
        return root.findtext("m:code", namespaces=NS) or "", root.findtext("m:message", namespaces=NS) or ""
