"""keydelivery.restrictions: TokenRestrictionTemplate parsing (as the .NET SDK serialises it),
JWT and SWT verification with symmetric, RSA and X.509 keys, IP ranges, and option/policy
evaluation — pure code, no server."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from openams.keydelivery.restrictions import (
    CONTENT_KEY_ID_CLAIM,
    JWT,
    SWT,
    Decision,
    KeyKind,
    Reason,
    TemplateError,
    check_ip,
    evaluate_option,
    evaluate_policy,
    mint_token,
    parse_ip_ranges,
    parse_template,
    verify_token,
)

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
ISSUER = "http://issuer.example/"
AUDIENCE = "urn:test:audience"
PRIMARY = bytes(range(64))
ALTERNATE = bytes(range(64, 128))
STRANGER = bytes(range(128, 192))
KID = uuid.UUID("a7d3c5f0-1b2e-4c9d-8e7f-001122334455")
OTHER_KID = uuid.UUID("0b8f9e3d-5c4a-4b2e-9d1f-66778899aabb")
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS = "http://schemas.microsoft.com/Azure/MediaServices/KeyDelivery/TokenRestrictionTemplate/v1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


RSA_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=365)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


CERT_DER = _certificate(RSA_PRIVATE)


def symmetric(key: bytes, tag: str = "PrimaryVerificationKey") -> str:
    return f'<{tag} i:type="SymmetricVerificationKey"><KeyValue>{b64(key)}</KeyValue></{tag}>'


def x509_key(der: bytes = CERT_DER, tag: str = "PrimaryVerificationKey") -> str:
    return f'<{tag} i:type="X509CertTokenVerificationKey"><RawBody>{b64(der)}</RawBody></{tag}>'


def rsa_key(key: rsa.RSAPrivateKey = RSA_PRIVATE, tag: str = "PrimaryVerificationKey",
            type_name: str = "RSATokenVerificationKey") -> str:
    numbers = key.public_key().public_numbers()
    body = json.dumps({"e": b64(numbers.e.to_bytes(3, "big")),
                       "n": b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))})
    return f'<{tag} i:type="{type_name}"><RawBody>{b64(body.encode())}</RawBody></{tag}>'


def claim(claim_type: str, value: str | None) -> str:
    inner = '<ClaimValue i:nil="true" />' if value is None else f"<ClaimValue>{value}</ClaimValue>"
    return f"<TokenClaim><ClaimType>{claim_type}</ClaimType>{inner}</TokenClaim>"


def template_xml(token_type: str | None = "JWT", primary: str | None = None, alternates: str = "",
                 claims: str | None = None, issuer: str = ISSUER, audience: str = AUDIENCE,
                 extra: str = "", xsi: str = XSI) -> str:
    """A template the way DataContractSerializer writes it: members in alphabetical order, the `i`
    prefix declared first, no XML declaration."""
    primary = symmetric(PRIMARY) if primary is None else primary
    claims = claim(CONTENT_KEY_ID_CLAIM, None) if claims is None else claims
    alt = f"<AlternateVerificationKeys>{alternates}</AlternateVerificationKeys>" if alternates else \
        "<AlternateVerificationKeys />"
    kind = f"<TokenType>{token_type}</TokenType>" if token_type else ""
    return (f'<TokenRestrictionTemplate xmlns:i="{xsi}" xmlns="{NS}">{alt}<Audience>{audience}</Audience>'
            f"<Issuer>{issuer}</Issuer>{extra}{primary}<RequiredClaims>{claims}</RequiredClaims>{kind}"
            "</TokenRestrictionTemplate>")


def jwt_token(key: Any = PRIMARY, alg: str = "HS256", **overrides: Any) -> str:
    payload = {"iss": ISSUER, "aud": AUDIENCE, "nbf": int(NOW.timestamp()) - 60,
               "exp": int(NOW.timestamp()) + 600, CONTENT_KEY_ID_CLAIM: str(KID)}
    payload.update(overrides)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=alg)


def swt_token(key: bytes = PRIMARY, claims: list[tuple[str, str]] | None = None, audience: str = AUDIENCE,
              issuer: str = ISSUER, expires: datetime | None = None) -> str:
    """Built by hand from the spec's description, independent of mint_token."""
    import hashlib
    import hmac

    fields = claims if claims is not None else [(CONTENT_KEY_ID_CLAIM, str(KID))]
    expiry = int((expires or NOW + timedelta(minutes=10)).timestamp())
    fields = [*fields, ("Audience", audience), ("ExpiresOn", str(expiry)), ("Issuer", issuer)]
    unsigned = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in fields)
    sig = base64.b64encode(hmac.new(key, unsigned.encode(), hashlib.sha256).digest()).decode()
    return f"{unsigned}&HMACSHA256={quote_plus(sig)}"


def denied(decision: Decision, reason: Reason) -> None:
    assert not decision.allowed and decision.reason == reason, decision


def allowed(decision: Decision) -> None:
    assert decision.allowed and decision.reason == Reason.ALLOWED, decision


# ---- parsing ------------------------------------------------------------------------------------------


SDK_SWT_SAMPLE = (
    f'<TokenRestrictionTemplate xmlns:i="{XSI}" xmlns="{NS}"><AlternateVerificationKeys>'
    f'<TokenVerificationKey i:type="SymmetricVerificationKey"><KeyValue>{b64(ALTERNATE)}</KeyValue>'
    "</TokenVerificationKey></AlternateVerificationKeys><Audience>urn:test:audience</Audience>"
    f'<Issuer>http://issuer.example/</Issuer><PrimaryVerificationKey i:type="SymmetricVerificationKey">'
    f"<KeyValue>{b64(PRIMARY)}</KeyValue></PrimaryVerificationKey><RequiredClaims><TokenClaim>"
    f'<ClaimType>{CONTENT_KEY_ID_CLAIM}</ClaimType><ClaimValue i:nil="true" /></TokenClaim><TokenClaim>'
    "<ClaimType>urn:myservice:claims:rental</ClaimType><ClaimValue>true</ClaimValue></TokenClaim>"
    "</RequiredClaims></TokenRestrictionTemplate>"
)


def test_parse_the_sdk_swt_layout() -> None:
    t = parse_template(SDK_SWT_SAMPLE)
    assert t.token_type == SWT  # no TokenType element: the older schema, read as SWT
    assert (t.issuer, t.audience) == (ISSUER, AUDIENCE)
    assert t.primary_key is not None and t.primary_key.kind is KeyKind.SYMMETRIC and t.primary_key.secret == PRIMARY
    assert [k.secret for k in t.alternate_keys] == [ALTERNATE]
    assert [(c.claim_type, c.claim_value) for c in t.required_claims] == [
        (CONTENT_KEY_ID_CLAIM, None), ("urn:myservice:claims:rental", "true")]
    assert t.openid_discovery_uri is None
    assert PRIMARY.hex() not in repr(t) and b64(PRIMARY) not in repr(t)  # keys stay out of logs


def test_parse_jwt_with_each_key_kind() -> None:
    t = parse_template(template_xml(primary=x509_key(), alternates=rsa_key(tag="TokenVerificationKey")
                                    + symmetric(ALTERNATE, "TokenVerificationKey")))
    assert t.token_type == JWT
    assert [k.kind for k in t.verification_keys] == [KeyKind.X509, KeyKind.RSA, KeyKind.SYMMETRIC]
    assert t.verification_keys[0].public_key.public_numbers() == RSA_PRIVATE.public_key().public_numbers()
    assert t.verification_keys[1].public_key.public_numbers() == RSA_PRIVATE.public_key().public_numbers()


@pytest.mark.parametrize("xsi", [XSI, "https://www.w3.org/2001/XMLSchema-instance"])
def test_instance_namespace_spelling_is_lenient(xsi: str) -> None:
    t = parse_template(template_xml(xsi=xsi, primary=rsa_key(type_name="RsaTokenVerificationKey")))
    assert t.primary_key is not None and t.primary_key.kind is KeyKind.RSA
    assert t.required_claims[0].claim_value is None


def test_openid_discovery_document() -> None:
    doc = ("<OpenIdConnectDiscoveryDocument><OpenIdDiscoveryUri>https://login.example/.well-known/"
           "openid-configuration</OpenIdDiscoveryUri></OpenIdConnectDiscoveryDocument>")
    t = parse_template(template_xml(primary='<PrimaryVerificationKey i:nil="true" />', extra=doc))
    assert t.primary_key is None and t.openid_discovery_uri.startswith("https://login.example/")
    decision = verify_token(t, jwt_token(), KID, NOW)
    denied(decision, Reason.UNSUPPORTED_VERIFICATION)
    assert "OpenID" in decision.message


BAD_TEMPLATES = [
    ("", "empty"),
    ("not xml", "well-formed"),
    ("<Other/>", "TokenRestrictionTemplate"),
    (template_xml(issuer=""), "Issuer"),
    (template_xml(audience=""), "Audience"),
    (template_xml(primary=""), "PrimaryVerificationKey or an OpenIdConnectDiscoveryDocument"),
    (template_xml(primary='<PrimaryVerificationKey i:nil="true" />'), "PrimaryVerificationKey or"),
    (template_xml(primary="", extra="<OpenIdConnectDiscoveryDocument><OpenIdDiscoveryUri>relative"
                                    "</OpenIdDiscoveryUri></OpenIdConnectDiscoveryDocument>"), "absolute"),
    (template_xml(primary="", extra='<OpenIdConnectDiscoveryDocument><OpenIdDiscoveryUri i:nil="true"/>'
                                    "</OpenIdConnectDiscoveryDocument>"), "OpenIdDiscoveryUri is empty"),
    (template_xml(primary='<PrimaryVerificationKey i:type="SymmetricVerificationKey"><KeyValue>***</KeyValue>'
                          "</PrimaryVerificationKey>"), "base64"),
    (template_xml(primary='<PrimaryVerificationKey i:type="SymmetricVerificationKey"/>'), "KeyValue is empty"),
    (template_xml(primary=x509_key(b"not a certificate")), "X.509"),
    (template_xml(primary='<PrimaryVerificationKey i:type="RsaTokenVerificationKey"><RawBody>e30=</RawBody>'
                          "</PrimaryVerificationKey>"), "modulus"),
    (template_xml(primary='<PrimaryVerificationKey i:type="EcKey"><RawBody>AA==</RawBody>'
                          "</PrimaryVerificationKey>"), "unsupported i:type"),
    (template_xml(primary="<PrimaryVerificationKey><KeyValue>AA==</KeyValue></PrimaryVerificationKey>"), "i:type"),
    (template_xml(token_type="SAML"), "TokenType"),
    (template_xml(token_type="SWT", issuer="just-a-name"), "absolute URI"),
    (template_xml(token_type="SWT", primary=x509_key()), "SymmetricVerificationKey"),
    (template_xml(claims="<TokenClaim><ClaimValue>x</ClaimValue></TokenClaim>"), "ClaimType"),
    (template_xml(claims=claim(CONTENT_KEY_ID_CLAIM, "not-a-guid")), "GUID"),
    ('<!DOCTYPE lol [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
     f'<TokenRestrictionTemplate xmlns="{NS}"><Issuer>&lol2;</Issuer></TokenRestrictionTemplate>', "DTD"),
]


@pytest.mark.parametrize("xml,fragment", BAD_TEMPLATES, ids=[f for _x, f in BAD_TEMPLATES])  # keys are random
def test_templates_that_cannot_work_are_refused(xml: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(xml)
    assert fragment in str(info.value)


# ---- JWT -------------------------------------------------------------------------------------------------


def test_jwt_symmetric_primary_and_alternate_keys() -> None:
    xml = template_xml(alternates=symmetric(ALTERNATE, "TokenVerificationKey"))
    allowed(verify_token(xml, jwt_token(PRIMARY), KID, NOW))
    allowed(verify_token(xml, jwt_token(ALTERNATE), KID, NOW))
    allowed(verify_token(xml, jwt_token(PRIMARY, alg="HS512"), KID, NOW))
    denied(verify_token(xml, jwt_token(STRANGER), KID, NOW), Reason.INVALID_SIGNATURE)


@pytest.mark.parametrize("key_xml", [rsa_key(), x509_key(), rsa_key(type_name="RsaTokenVerificationKey")],
                         ids=["RSATokenVerificationKey", "X509CertTokenVerificationKey", "RsaTokenVerificationKey"])
def test_jwt_rs256_with_rsa_and_x509_keys(key_xml: str) -> None:
    xml = template_xml(primary=key_xml)
    allowed(verify_token(xml, jwt_token(RSA_PRIVATE, alg="RS256"), KID, NOW))
    denied(verify_token(xml, jwt_token(OTHER_RSA, alg="RS256"), KID, NOW), Reason.INVALID_SIGNATURE)
    # the classic confusion: an HS256 token keyed with the public key's PEM must not pass
    pem = RSA_PRIVATE.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac

    head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "exp": 2_000_000_000,
                                                CONTENT_KEY_ID_CLAIM: str(KID)}).encode()).rstrip(b"=").decode()
    sig = base64.urlsafe_b64encode(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    forged = f"{head}.{body}.{sig.rstrip(b'=').decode()}"
    decision = verify_token(xml, forged, KID, NOW)
    denied(decision, Reason.INVALID_SIGNATURE)
    assert "HS256" in decision.message and "RS256" in decision.message


def test_rs256_key_as_an_alternate() -> None:
    xml = template_xml(alternates=x509_key(tag="TokenVerificationKey"))
    allowed(verify_token(xml, jwt_token(RSA_PRIVATE, alg="RS256"), KID, NOW))
    allowed(verify_token(xml, jwt_token(PRIMARY), KID, NOW))


@pytest.mark.parametrize("overrides,reason", [
    ({"exp": int((NOW - timedelta(hours=1)).timestamp())}, Reason.TOKEN_EXPIRED),
    ({"exp": None}, Reason.MALFORMED_TOKEN),
    ({"exp": "tomorrow"}, Reason.MALFORMED_TOKEN),
    ({"exp": float("inf")}, Reason.MALFORMED_TOKEN),
    ({"exp": float("nan")}, Reason.MALFORMED_TOKEN),
    ({"nbf": int((NOW + timedelta(hours=1)).timestamp())}, Reason.TOKEN_NOT_YET_VALID),
    ({"iss": "http://evil.example/"}, Reason.INVALID_ISSUER),
    ({"iss": None}, Reason.INVALID_ISSUER),
    ({"aud": "urn:someone:else"}, Reason.INVALID_AUDIENCE),
    ({"aud": ["urn:a", "urn:b"]}, Reason.INVALID_AUDIENCE),
    ({CONTENT_KEY_ID_CLAIM: None}, Reason.MISSING_CLAIM),
    ({CONTENT_KEY_ID_CLAIM: str(OTHER_KID)}, Reason.WRONG_KEY_ID),
    ({CONTENT_KEY_ID_CLAIM: "not-a-guid"}, Reason.WRONG_KEY_ID),
])
def test_jwt_denials(overrides: dict[str, Any], reason: Reason) -> None:
    token = jwt_token(**overrides)
    decision = verify_token(template_xml(), token, KID, NOW)
    denied(decision, reason)
    assert token not in decision.message and b64(PRIMARY) not in decision.message


@pytest.mark.parametrize("overrides", [
    {"exp": int((NOW - timedelta(seconds=30)).timestamp())},  # within the clock skew
    {"aud": ["urn:other", AUDIENCE]},
    {"iss": "HTTP://Issuer.Example"},  # .NET Uri equality: case of scheme/host, the trailing slash
    {CONTENT_KEY_ID_CLAIM: f"nb:kid:UUID:{str(KID).upper()}"},
    {CONTENT_KEY_ID_CLAIM: [str(OTHER_KID), str(KID)]},
])
def test_jwt_accepted_variants(overrides: dict[str, Any]) -> None:
    allowed(verify_token(template_xml(), jwt_token(**overrides), KID, NOW))


def test_key_id_may_be_given_in_any_form() -> None:
    token = jwt_token()
    for kid in (KID, str(KID), f"nb:kid:UUID:{KID}", str(KID).upper()):
        allowed(verify_token(template_xml(), token, kid, NOW))
    denied(verify_token(template_xml(), token, OTHER_KID, NOW), Reason.WRONG_KEY_ID)
    denied(verify_token(template_xml(), token, None, NOW), Reason.WRONG_KEY_ID)


def test_required_claims_with_and_without_values() -> None:
    xml = template_xml(claims=claim("urn:rental", "true") + claim("urn:user", None) + claim("level", "5"))
    allowed(verify_token(xml, jwt_token(**{"urn:rental": True, "urn:user": "ann", "level": 5}), KID, NOW))
    allowed(verify_token(xml, jwt_token(**{"urn:rental": "true", "urn:user": "", "level": ["1", "5"]}), KID, NOW))
    denied(verify_token(xml, jwt_token(**{"urn:rental": "false", "urn:user": "ann", "level": 5}), KID, NOW),
           Reason.WRONG_CLAIM_VALUE)
    decision = verify_token(xml, jwt_token(**{"urn:rental": "true", "level": 5}), KID, NOW)
    denied(decision, Reason.MISSING_CLAIM)
    assert "urn:user" in decision.message


def test_a_fixed_key_id_claim_value() -> None:
    xml = template_xml(claims=claim(CONTENT_KEY_ID_CLAIM, str(KID)))
    allowed(verify_token(xml, jwt_token(), KID, NOW))
    denied(verify_token(xml, jwt_token(**{CONTENT_KEY_ID_CLAIM: str(OTHER_KID)}), OTHER_KID, NOW),
           Reason.WRONG_KEY_ID)


@pytest.mark.parametrize("token,reason", [
    ("", Reason.TOKEN_MISSING),
    (None, Reason.TOKEN_MISSING),
    ("Bearer ", Reason.TOKEN_MISSING),
    ("garbage", Reason.MALFORMED_TOKEN),
    ("a.b", Reason.MALFORMED_TOKEN),
    ("!!!.@@@.###", Reason.MALFORMED_TOKEN),
    (base64.urlsafe_b64encode(b"[1]").decode().rstrip("=") + ".e30.AA", Reason.MALFORMED_TOKEN),
    ("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.", Reason.INVALID_SIGNATURE),  # alg none
    ("Issuer=x&ExpiresOn=1&HMACSHA256=abc%3D", Reason.WRONG_TOKEN_TYPE),
    ("a" * 70_000 + ".b.c", Reason.MALFORMED_TOKEN),
])
def test_malformed_jwts(token: str | None, reason: Reason) -> None:
    denied(verify_token(template_xml(), token, KID, NOW), reason)


def test_bearer_prefixes_are_accepted() -> None:
    token = jwt_token()
    for sent in (token, f"Bearer {token}", f"bearer {token}", f"Bearer={token}", f"  {token}  "):
        allowed(verify_token(template_xml(), sent, KID, NOW))


def test_an_unparseable_stored_template_denies() -> None:
    decision = verify_token("<nope", jwt_token(), KID, NOW)
    denied(decision, Reason.INVALID_RESTRICTION)


# ---- SWT -------------------------------------------------------------------------------------------------


SWT_TEMPLATE = template_xml(token_type="SWT", alternates=symmetric(ALTERNATE, "TokenVerificationKey"),
                            claims=claim(CONTENT_KEY_ID_CLAIM, None) + claim("urn:myservice:claims:rental", "true"))
SWT_CLAIMS = [(CONTENT_KEY_ID_CLAIM, str(KID)), ("urn:myservice:claims:rental", "true")]


def test_swt_symmetric_primary_and_alternate() -> None:
    allowed(verify_token(SWT_TEMPLATE, swt_token(PRIMARY, SWT_CLAIMS), KID, NOW))
    allowed(verify_token(SWT_TEMPLATE, swt_token(ALTERNATE, SWT_CLAIMS), KID, NOW))
    allowed(verify_token(SDK_SWT_SAMPLE, "Bearer=" + swt_token(PRIMARY, SWT_CLAIMS), KID, NOW))
    denied(verify_token(SWT_TEMPLATE, swt_token(STRANGER, SWT_CLAIMS), KID, NOW), Reason.INVALID_SIGNATURE)


def test_swt_tampering_breaks_the_signature() -> None:
    token = swt_token(PRIMARY, SWT_CLAIMS)
    tampered = token.replace(str(KID), str(OTHER_KID))
    denied(verify_token(SWT_TEMPLATE, tampered, OTHER_KID, NOW), Reason.INVALID_SIGNATURE)


@pytest.mark.parametrize("kwargs,reason", [
    ({"expires": NOW - timedelta(minutes=5)}, Reason.TOKEN_EXPIRED),
    ({"issuer": "http://evil.example/"}, Reason.INVALID_ISSUER),
    ({"audience": "urn:someone:else"}, Reason.INVALID_AUDIENCE),
    ({"claims": [(CONTENT_KEY_ID_CLAIM, str(KID))]}, Reason.MISSING_CLAIM),
    ({"claims": [(CONTENT_KEY_ID_CLAIM, str(KID)), ("urn:myservice:claims:rental", "false")]},
     Reason.WRONG_CLAIM_VALUE),
    ({"claims": [(CONTENT_KEY_ID_CLAIM, str(OTHER_KID)), ("urn:myservice:claims:rental", "true")]},
     Reason.WRONG_KEY_ID),
])
def test_swt_denials(kwargs: dict[str, Any], reason: Reason) -> None:
    token = swt_token(PRIMARY, **({"claims": SWT_CLAIMS} | kwargs))
    decision = verify_token(SWT_TEMPLATE, token, KID, NOW)
    denied(decision, reason)
    assert token not in decision.message and b64(PRIMARY) not in decision.message


def test_swt_issuer_without_the_trailing_slash() -> None:
    allowed(verify_token(SWT_TEMPLATE, swt_token(PRIMARY, SWT_CLAIMS, issuer="http://issuer.example"), KID, NOW))


@pytest.mark.parametrize("token,reason", [
    ("Audience=a&ExpiresOn=1", Reason.MALFORMED_TOKEN),
    ("Audience=a&HMACSHA256=%%%", Reason.MALFORMED_TOKEN),
    (jwt_token(), Reason.WRONG_TOKEN_TYPE),
])
def test_malformed_swts(token: str, reason: Reason) -> None:
    denied(verify_token(SWT_TEMPLATE, token, KID, NOW), reason)


def test_swt_with_a_valueless_pair_or_no_expiry() -> None:
    import hashlib
    import hmac

    for unsigned in ("Audience=urn%3Atest%3Aaudience&junk&Issuer=x", "Audience=urn%3Atest%3Aaudience&Issuer=x"):
        sig = base64.b64encode(hmac.new(PRIMARY, unsigned.encode(), hashlib.sha256).digest()).decode()
        denied(verify_token(SWT_TEMPLATE, f"{unsigned}&HMACSHA256={quote_plus(sig)}", KID, NOW),
               Reason.MALFORMED_TOKEN)


# ---- minting --------------------------------------------------------------------------------------------


def test_minted_tokens_verify() -> None:
    swt = mint_token(SWT_TEMPLATE, key_id=KID, now=NOW)
    assert swt.startswith(quote_plus(CONTENT_KEY_ID_CLAIM) + "=") and "&HMACSHA256=" in swt
    allowed(verify_token(SWT_TEMPLATE, swt, KID, NOW))
    denied(verify_token(SWT_TEMPLATE, swt, KID, NOW + timedelta(hours=1)), Reason.TOKEN_EXPIRED)
    jwt_text = mint_token(template_xml(), key_id=KID, now=NOW)
    allowed(verify_token(template_xml(), jwt_text, KID, NOW))
    # PyJWT agrees with our HS256
    assert jwt.decode(jwt_text, PRIMARY, algorithms=["HS256"], audience=AUDIENCE,
                      options={"verify_exp": False})[CONTENT_KEY_ID_CLAIM] == str(KID)
    rs = mint_token(template_xml(primary=x509_key()), key_id=KID, now=NOW, rsa_private_key=RSA_PRIVATE)
    allowed(verify_token(template_xml(primary=x509_key()), rs, KID, NOW))
    alt = parse_template(SWT_TEMPLATE).alternate_keys[0]
    allowed(verify_token(SWT_TEMPLATE, mint_token(SWT_TEMPLATE, key_id=KID, now=NOW, signing_key=alt), KID, NOW))
    extra = template_xml(claims=claim("urn:user", None))
    allowed(verify_token(extra, mint_token(extra, now=NOW, claims={"urn:user": "ann"}), None, NOW))


def test_minting_needs_what_the_template_requires() -> None:
    with pytest.raises(ValueError, match="key_id"):
        mint_token(template_xml(), now=NOW)
    with pytest.raises(ValueError, match="symmetric"):
        mint_token(template_xml(primary=x509_key()), key_id=KID, now=NOW)


# ---- IP restrictions ------------------------------------------------------------------------------------


def test_ip_range_formats() -> None:
    ranges = parse_ip_ranges("10.0.0.0/8, 192.168.1.20-192.168.1.40;2001:db8::/32\n203.0.113.7 ::1")
    assert len(ranges) == 5
    for ip in ("10.1.2.3", "192.168.1.20", "192.168.1.40", "2001:db8::5", "203.0.113.7", "::1",
               "::ffff:10.9.9.9", "[2001:db8::1]"):
        allowed(check_ip(ranges, ip))
    for ip in ("11.0.0.1", "192.168.1.41", "2001:db9::1", "203.0.113.8"):
        decision = check_ip(ranges, ip)
        denied(decision, Reason.IP_NOT_ALLOWED)
        assert ip in decision.message
    denied(check_ip(ranges, None), Reason.IP_NOT_ALLOWED)
    denied(check_ip(ranges, "not-an-ip"), Reason.IP_NOT_ALLOWED)
    allowed(check_ip("127.0.0.1", "127.0.0.1"))
    denied(check_ip("nonsense", "127.0.0.1"), Reason.INVALID_RESTRICTION)


@pytest.mark.parametrize("text,fragment", [("", "empty"), ("  ,; ", "empty"), ("10.0.0.300", "10.0.0.300"),
                                           ("10.0.0.9-10.0.0.1", "range"), ("10.0.0.1-::1", "range"),
                                           ("10.0.0.0/33", "CIDR"), ("example.com", "example.com")])
def test_bad_ip_ranges(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_ip_ranges(text)
    assert fragment in str(info.value)


# ---- options and policies -------------------------------------------------------------------------------


def option(*restrictions: tuple[int, str | None], delivery: int = 2, option_id: str = "opt") -> dict[str, Any]:
    return {"Id": option_id, "KeyDeliveryType": delivery,
            "Restrictions": [{"Name": f"r{i}", "KeyRestrictionType": k, "Requirements": r}
                             for i, (k, r) in enumerate(restrictions)]}


def test_every_restriction_of_an_option_must_pass() -> None:
    open_option = option((0, None))
    allowed(evaluate_option(open_option, None, KID, None, NOW))
    both = option((1, template_xml()), (2, "10.0.0.0/8"))
    allowed(evaluate_option(both, jwt_token(), KID, "10.1.1.1", NOW))
    denied(evaluate_option(both, jwt_token(), KID, "192.0.2.1", NOW), Reason.IP_NOT_ALLOWED)
    denied(evaluate_option(both, None, KID, "10.1.1.1", NOW), Reason.TOKEN_MISSING)
    denied(evaluate_option(option(), None, KID, None, NOW), Reason.INVALID_RESTRICTION)
    denied(evaluate_option(option((7, None)), None, KID, None, NOW), Reason.INVALID_RESTRICTION)
    assert evaluate_option(both, None, KID, "10.1.1.1", NOW).option_id == "opt"


def test_any_option_of_a_policy_allows() -> None:
    token_only = option((1, template_xml()), option_id="token")
    office = option((2, "10.0.0.0/8"), option_id="office")
    playready = option((0, None), delivery=1, option_id="playready")
    policy = [token_only, office, playready]
    d = evaluate_policy(policy, None, KID, "10.2.3.4", NOW, delivery_type=2)
    assert d.allowed and d.option_id == "office"
    d = evaluate_policy(policy, jwt_token(), KID, "192.0.2.1", NOW, delivery_type=2)
    assert d.allowed and d.option_id == "token"
    d = evaluate_policy(policy, jwt_token(STRANGER), KID, "192.0.2.1", NOW, delivery_type=2)
    denied(d, Reason.INVALID_SIGNATURE)
    assert d.option_id == "token"  # the first option's failure is the one reported
    denied(evaluate_policy(policy, None, KID, None, NOW, delivery_type=3), Reason.NO_MATCHING_OPTION)
    denied(evaluate_policy([], None, KID, None, NOW), Reason.NO_MATCHING_OPTION)
    assert evaluate_policy(policy, None, KID, None, NOW).option_id == "playready"  # any delivery type
