#!/usr/bin/env python3
"""Loopback fakes for fleetctx's integration tests.

Starts, on 127.0.0.1 with OS-chosen ports:
  * a Google fake (plain HTTP): OAuth2 JWT-bearer token endpoint, IAM Credentials
    generateAccessToken, and the control routes /_config /_reset /_stats /_tokens
    /_eks/patch;
  * a Kubernetes API server fake (HTTPS) that checks bearer tokens: Google tokens
    issued by the Google fake, and EKS `k8s-aws-v1.` tokens whose SigV4 presigned
    URL it verifies by recomputing the signature;
  * moto (in-process, unless --no-moto) with every STS Action counted.

Prints ONE JSON line on stdout when everything is ready, then serves until stdin
reaches EOF (or --no-stdin-watch), SIGTERM or SIGINT. Nothing else goes to stdout;
stderr stays quiet unless --verbose.

Other modes:
  fakes.py --self-test            check the EKS verifier against the golden vectors
  fakes.py --google-token KEYFILE print an access token for a service-account key
                                  file (signs a JWT and POSTs it to its token_uri)

Dependencies: the standard library, `cryptography`, and `moto[server]` (imported
only when moto is started).
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PROJECT_ID = "test-project"
SA_EMAILS = (
    "fleetctx-test@test-project.iam.gserviceaccount.com",
    "fleetctx-other@test-project.iam.gserviceaccount.com",
)
DEFAULT_EXPIRES_IN = 3599
EKS_PREFIX = "k8s-aws-v1."
EKS_MAX_TOKEN_LEN = 4096
EKS_MAX_AGE = 15 * 60
EKS_MAX_FUTURE = 5 * 60
EKS_ALLOWED_PARAMS = frozenset(
    [
        "Action",
        "Version",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
        "X-Amz-SignedHeaders",
    ]
)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
STS_HOST_RE = re.compile(r"^sts\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")

VERBOSE = False


def vlog(msg):
    if VERBOSE:
        print(f"fakes: {msg}", file=sys.stderr, flush=True)


def rfc3339(ts):
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def b64url_decode(s):
    """Decode base64url with or without padding (gcp_auth pads its JWT parts)."""
    s = s.rstrip("=")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# ---------------------------------------------------------------------------
# EKS token verification (stdlib only, so --self-test runs anywhere)
# ---------------------------------------------------------------------------


class EksReject(Exception):
    pass


def _sigv4_quote(s):
    return urllib.parse.quote(s, safe="-_.~")


def sigv4_presign_signature(secret, params, host, cluster):
    """Signature of a query-string-signed STS GetCallerIdentity request.

    params: dict of the query parameters (decoded), X-Amz-Signature excluded.
    """
    enc = sorted((_sigv4_quote(k), _sigv4_quote(v)) for k, v in params.items())
    canonical_query = "&".join(f"{k}={v}" for k, v in enc)
    canonical_request = "\n".join(
        [
            "GET",
            "/",
            canonical_query,
            f"host:{host}",
            f"x-k8s-aws-id:{cluster}",
            "",
            "host;x-k8s-aws-id",
            EMPTY_SHA256,
        ]
    )
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    date8, region, service = scope.split("/")[:3]
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )

    def h(key, msg):
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    k = h(("AWS4" + secret).encode(), date8)
    k = h(k, region)
    k = h(k, service)
    k = h(k, "aws4_request")
    return hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify_eks_token(token, cluster, lookup_key, now=None):
    """Check an EKS bearer token the way EKS (aws-iam-authenticator + STS) does.

    lookup_key(access_key_id) -> (secret, session_token_or_None) or None.
    Returns the access key id on success; raises EksReject otherwise.
    """
    now = time.time() if now is None else now
    if not token.startswith(EKS_PREFIX):
        raise EksReject("not a k8s-aws-v1 token")
    if len(token) > EKS_MAX_TOKEN_LEN:
        raise EksReject("token longer than 4096 bytes")
    body = token[len(EKS_PREFIX):]
    if "=" in body:
        raise EksReject("token is padded base64 (must be base64url without padding)")
    try:
        url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except Exception:
        raise EksReject("token is not base64url")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise EksReject("not a URL")
    if parts.scheme != "https":
        raise EksReject("scheme is not https")
    if parts.path != "/":
        raise EksReject("path is not /")
    if parts.fragment or parts.username or parts.password or parts.port:
        raise EksReject("unexpected URL parts")
    host = parts.netloc
    m = STS_HOST_RE.match(host)
    if not m:
        raise EksReject(f"host {host!r} is not a regional STS host")
    try:
        pairs = urllib.parse.parse_qsl(
            parts.query, keep_blank_values=True, strict_parsing=True
        )
    except ValueError:
        raise EksReject("malformed query")
    params = {}
    for k, v in pairs:
        if k not in EKS_ALLOWED_PARAMS:
            raise EksReject(f"parameter {k!r} not allowed")
        if k in params:
            raise EksReject(f"parameter {k!r} repeated")
        params[k] = v
    for k in (
        "Action",
        "Version",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-Signature",
        "X-Amz-SignedHeaders",
    ):
        if k not in params:
            raise EksReject(f"parameter {k} missing")
    if params["Action"] != "GetCallerIdentity":
        raise EksReject("Action is not GetCallerIdentity")
    if params["Version"] != "2011-06-15":
        raise EksReject("Version is not 2011-06-15")
    if params["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
        raise EksReject("X-Amz-Algorithm is not AWS4-HMAC-SHA256")
    if params["X-Amz-SignedHeaders"] != "host;x-k8s-aws-id":
        raise EksReject("X-Amz-SignedHeaders is not host;x-k8s-aws-id")
    if not params["X-Amz-Expires"].isdigit():
        raise EksReject("X-Amz-Expires is not a number")
    cred = params["X-Amz-Credential"].split("/")
    if len(cred) != 5 or cred[3] != "sts" or cred[4] != "aws4_request":
        raise EksReject("malformed X-Amz-Credential")
    akid, date8, region = cred[0], cred[1], cred[2]
    if region != m.group(1):
        raise EksReject("host region differs from credential scope region")
    amz_date = params["X-Amz-Date"]
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc
        ).timestamp()
    except ValueError:
        raise EksReject("malformed X-Amz-Date")
    if amz_date[:8] != date8:
        raise EksReject("X-Amz-Date differs from credential scope date")
    if now - signed_at > EKS_MAX_AGE:
        raise EksReject("token older than 15 minutes")
    if signed_at - now > EKS_MAX_FUTURE:
        raise EksReject("token signed in the future")
    if not cluster:
        raise EksReject("no cluster name (use the /eks/<cluster> path prefix)")
    found = lookup_key(akid)
    if not found:
        raise EksReject(f"unknown access key id {akid}")
    secret, session_token = found
    if params.get("X-Amz-Security-Token") != session_token:
        raise EksReject("X-Amz-Security-Token does not match the credentials")
    unsigned = {k: v for k, v in params.items() if k != "X-Amz-Signature"}
    want = sigv4_presign_signature(secret, unsigned, host, cluster)
    if not hmac.compare_digest(want, params["X-Amz-Signature"]):
        raise EksReject("signature mismatch")
    return akid


def self_test():
    ok = True

    def check(name, cond):
        nonlocal ok
        print(f"{'ok  ' if cond else 'FAIL'} {name}")
        ok = ok and cond

    akid = "ASIAR2TG44V6AS3ZZE7C"
    secret = "4KD5cntGcVmLWRdF5wvNRuzNL5Qxmp6OKVY6Fz/Q"
    now = 1682640000
    base = {
        "Action": "GetCallerIdentity",
        "Version": "2011-06-15",
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{akid}/20230428/us-west-2/sts/aws4_request",
        "X-Amz-Date": "20230428T000000Z",
        "X-Amz-Expires": "60",
        "X-Amz-SignedHeaders": "host;x-k8s-aws-id",
    }
    host = "sts.us-west-2.amazonaws.com"
    gold1 = "e211dba77aba9dc44b0b6be38b8eaad092599c5157f6314444c5b9d85747f5ce"
    gold2 = "b4b5f7e7f688de16238ef6cbfc463a4f4040eb27826d49292eeb219bd6d49d3e"
    sig1 = sigv4_presign_signature(secret, base, host, "test-cluster")
    check("golden vector 1 (no session token)", sig1 == gold1)
    with_tok = dict(base, **{"X-Amz-Security-Token": "SESSIONTOKEN/+="})
    sig2 = sigv4_presign_signature(secret, with_tok, host, "test-cluster")
    check("golden vector 2 (session token)", sig2 == gold2)

    golden_url = (
        "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"
        "&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAR2TG44V6AS3ZZE7C%2F20230428"
        "%2Fus-west-2%2Fsts%2Faws4_request&X-Amz-Date=20230428T000000Z&X-Amz-Expires=60"
        "&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=" + gold1
    )

    def tok(url):
        return EKS_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")

    def accepts(url, cluster="test-cluster", keys=None, at=now):
        keys = keys if keys is not None else {akid: (secret, None)}
        try:
            verify_eks_token(tok(url) if not url.startswith(EKS_PREFIX) else url,
                             cluster, keys.get, now=at)
            return True
        except EksReject as e:
            if VERBOSE:
                print(f"     rejected: {e}")
            return False

    check("golden URL accepted as a token", accepts(golden_url))
    q2 = urllib.parse.urlencode(dict(with_tok, **{"X-Amz-Signature": gold2}),
                                quote_via=urllib.parse.quote)
    url2 = f"https://{host}/?{q2}"
    check("golden URL 2 accepted with its session token",
          accepts(url2, keys={akid: (secret, "SESSIONTOKEN/+=")}))
    check("golden URL 2 rejected with another session token",
          not accepts(url2, keys={akid: (secret, "OTHER")}))
    check("golden URL 1 rejected when a session token is registered",
          not accepts(golden_url, keys={akid: (secret, "SESSIONTOKEN/+=")}))
    check("wrong cluster rejected", not accepts(golden_url, cluster="other"))
    check("no cluster rejected", not accepts(golden_url, cluster=None))
    check("wrong secret rejected", not accepts(golden_url, keys={akid: ("x" * 40, None)}))
    check("unknown key rejected", not accepts(golden_url, keys={}))
    check("tampered signature rejected", not accepts(golden_url[:-1] + "0"))
    check("14 min old accepted", accepts(golden_url, at=now + 14 * 60))
    check("16 min old rejected", not accepts(golden_url, at=now + 16 * 60))
    check("6 min in the future rejected", not accepts(golden_url, at=now - 6 * 60))
    check("extra parameter rejected", not accepts(golden_url + "&X-Amz-Foo=1"))
    check("repeated parameter rejected", not accepts(golden_url + "&Action=GetCallerIdentity"))
    check("global STS host rejected",
          not accepts(golden_url.replace("sts.us-west-2.amazonaws.com", "sts.amazonaws.com")))
    check("other region host rejected",
          not accepts(golden_url.replace("sts.us-west-2.", "sts.us-east-1.")))
    check("http rejected", not accepts(golden_url.replace("https://", "http://")))
    check("path /x rejected", not accepts(golden_url.replace(".com/?", ".com/x?")))
    check("padded token rejected", not accepts(tok(golden_url) + "="))
    check("over-long token rejected", not accepts(golden_url + "&" + "A" * 4096))

    try:
        import cryptography  # noqa: F401
    except ImportError:
        print("skip JWT round trip (cryptography not importable)")
    else:
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        iat = int(time.time())
        claims = {"iss": "a@b", "aud": "http://x/token", "scope": CLOUD_PLATFORM,
                  "iat": iat, "exp": iat + 3595, "sub": None}
        for pad in (False, True):
            jwt = sign_jwt(key, claims, pad=pad)
            try:
                got = verify_jwt(jwt, {"a@b": key.public_key()}, "http://x/token", now=iat)
                check(f"JWT round trip (padded={pad})", got["iss"] == "a@b")
            except ValueError as e:
                check(f"JWT round trip (padded={pad}): {e}", False)
        bad = sign_jwt(key, dict(claims, exp=iat + 3601))
        try:
            verify_jwt(bad, {"a@b": key.public_key()}, "http://x/token", now=iat)
            check("JWT exp-iat > 3600 rejected", False)
        except ValueError:
            check("JWT exp-iat > 3600 rejected", True)
    print("self-test " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


# ---------------------------------------------------------------------------
# JWTs (cryptography)
# ---------------------------------------------------------------------------


def sign_jwt(private_key, claims, pad=False):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def enc(b):
        s = base64.urlsafe_b64encode(b).decode()
        return s if pad else s.rstrip("=")

    head = enc(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = enc(json.dumps(claims).encode())
    signing_input = f"{head}.{body}".encode()
    sig = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{enc(sig)}"


def verify_jwt(jwt, public_keys, audience, now=None, check_time=True):
    """Verify a Google service-account JWT-bearer assertion. Raises ValueError."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    now = time.time() if now is None else now
    parts = jwt.split(".")
    if len(parts) != 3:
        raise ValueError("Invalid JWT: not three segments")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except Exception:
        raise ValueError("Invalid JWT: undecodable segment")
    if not isinstance(header, dict) or header.get("alg") != "RS256":
        raise ValueError("Invalid JWT: alg must be RS256")
    if not isinstance(claims, dict):
        raise ValueError("Invalid JWT: claims are not an object")
    iss = claims.get("iss")
    pub = public_keys.get(iss)
    if pub is None:
        raise ValueError(f"Invalid JWT: unknown issuer {iss!r}")
    try:
        pub.verify(sig, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise ValueError("Invalid JWT Signature.")
    if claims.get("aud") != audience:
        raise ValueError(f"Invalid JWT: aud must be {audience}")
    scopes = str(claims.get("scope") or "").split()
    if CLOUD_PLATFORM not in scopes:
        raise ValueError(f"Invalid JWT: scope must contain {CLOUD_PLATFORM}")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)):
        raise ValueError("Invalid JWT: iat and exp must be numbers")
    if exp - iat > 3600 or exp <= iat:
        raise ValueError("Invalid JWT: Token must be a short-lived token (60 minutes)")
    if check_time and (iat > now + 300 or exp < now - 300):
        raise ValueError(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
            "reasonable timeframe. Check your iat and exp values in the JWT claim."
        )
    claims["_scopes"] = scopes
    return claims


# ---------------------------------------------------------------------------
# Key material
# ---------------------------------------------------------------------------


def _write(path, data, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def make_tls(state_dir):
    """CA + kube server cert (EC P-256). Reused when already in state_dir."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    ca_file = os.path.join(state_dir, "ca.pem")
    cert_file = os.path.join(state_dir, "kube-cert.pem")
    key_file = os.path.join(state_dir, "kube-key.pem")
    if all(os.path.exists(p) for p in (ca_file, cert_file, key_file)):
        return ca_file, cert_file, key_file

    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(days=1)
    end = now + datetime.timedelta(days=3650)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleetctx-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleetctx-test-kube")]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write(key_file, srv_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), 0o600)
    _write(cert_file, srv_cert.public_bytes(pem))
    _write(ca_file, ca_cert.public_bytes(pem))
    return ca_file, cert_file, key_file


def make_sa_key(path, email, token_uri, base_url):
    """Write a service-account key file shaped like a real one; return its key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = None
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
            key = serialization.load_pem_private_key(old["private_key"].encode(), None)
            key_id, client_id = old["private_key_id"], old["client_id"]
        except Exception:
            key = None
    if key is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        client_id = str(100000000000000000000 + secrets.randbelow(10**20))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    doc = {
        "type": "service_account",
        "project_id": PROJECT_ID,
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": client_id,
        "auth_uri": f"{base_url}/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": f"{base_url}/oauth2/v1/certs",
        "client_x509_cert_url": f"{base_url}/robot/v1/metadata/x509/"
        + urllib.parse.quote(email, safe=""),
        "universe_domain": "googleapis.com",
    }
    _write(path, json.dumps(doc, indent=2) + "\n", 0o600)
    return key


# ---------------------------------------------------------------------------
# Shared state
# ---------------------------------------------------------------------------


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.sa_public_keys = {}  # email -> RSA public key
        self.token_uri = None
        self.kube_url = None
        self.ca_b64 = None
        self.aws_keys = {}  # access key id -> (secret, session token or None)
        self.tokens = {}  # google access token -> record
        self.token_seq = 0
        self.moto_enabled = False
        self.reset()

    def reset(self):
        with self.lock:
            self.expires_in = DEFAULT_EXPIRES_IN
            self.delay_ms = 0
            self.check_jwt_time = True
            self.faults = {}  # route -> [status, remaining]
            self.denied_impersonation = set()
            self.stats = {
                "token_requests": 0,
                "generate_access_token_requests": 0,
                "sts": {},
                "kube_requests": 0,
                "kube_unauthorized": 0,
                "kube_token_kinds": {"gke": 0, "eks": 0},
                "kube_identities": {},
            }

    def bump(self, key, sub=None):
        with self.lock:
            if sub is None:
                self.stats[key] += 1
            else:
                d = self.stats[key]
                d[sub] = d.get(sub, 0) + 1

    def take_fault(self, route):
        with self.lock:
            f = self.faults.get(route)
            if not f or f[1] <= 0:
                return None
            f[1] -= 1
            return f[0]

    def issue(self, prefix, email, scopes, expires_at, source):
        with self.lock:
            self.token_seq += 1
            tok = f"ya29.{prefix}-{self.token_seq}-{secrets.token_hex(16)}"
            self.tokens[tok] = {
                "n": self.token_seq,
                "kind": prefix,
                "email": email,
                "scopes": list(scopes),
                "expires_at": expires_at,
                "issued_at": time.time(),
                "source": source,
                "revoked": False,
            }
            return tok

    def google_token(self, tok):
        """The record of a live issued token, else None."""
        with self.lock:
            rec = self.tokens.get(tok)
            if rec is None or rec["revoked"] or time.time() >= rec["expires_at"]:
                return None
            return rec

    def aws_lookup(self, akid):
        with self.lock:
            if akid in self.aws_keys:
                return self.aws_keys[akid]
        if self.moto_enabled:
            return moto_lookup(akid)
        return None


STATE = State()


# ---------------------------------------------------------------------------
# moto
# ---------------------------------------------------------------------------


def moto_lookup(akid):
    """Secret and session token of credentials moto issued (AssumeRole & co.)."""
    try:
        from moto.iam.models import iam_backends
        from moto.sts.models import sts_backends
    except Exception:
        return None
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    # sts_backends[account][partition].assumed_roles: list of AssumedRole with
    # access_key_id, secret_access_key, session_token, expiration (naive UTC).
    for _account, per_account in list(dict.items(sts_backends)):
        for _partition, backend in list(dict.items(per_account)):
            for role in list(getattr(backend, "assumed_roles", [])):
                if role.access_key_id == akid:
                    if role.expiration <= now:
                        return None
                    return role.secret_access_key, role.session_token
    # IAM users' long-lived keys: iam_backends[account][partition].access_keys
    # (dict key id -> AccessKey; temporary ASIA keys also land there but are
    # handled above since they need their session token).
    for _account, per_account in list(dict.items(iam_backends)):
        for _partition, backend in list(dict.items(per_account)):
            key = backend.access_keys.get(akid)
            if key is not None and getattr(key, "status", "Active") == "Active":
                return key.secret_access_key, None
    return None


class StsCountingApp:
    """WSGI middleware: count the Action of every STS request moto receives."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        try:
            self._count(environ)
        except Exception as e:  # never break moto over bookkeeping
            vlog(f"sts counting failed: {e}")
        return self.app(environ, start_response)

    def _count(self, environ):
        auth = environ.get("HTTP_AUTHORIZATION", "")
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        action = (query.get("Action") or [None])[0]
        scope = auth or (query.get("X-Amz-Credential") or [""])[0]
        body = b""
        ctype = environ.get("CONTENT_TYPE", "")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length and ctype.startswith("application/x-www-form-urlencoded"):
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            action = (form.get("Action") or [action])[0]
        is_sts = "/sts/aws4_request" in scope
        if not scope and action in ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"):
            is_sts = True  # unsigned STS calls
        if is_sts and action:
            STATE.bump("sts", action)


def start_moto():
    from moto.server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    if not VERBOSE:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

    class CountingMotoServer(ThreadedMotoServer):
        # Same as ThreadedMotoServer._server_entry, with the app wrapped.
        def _server_entry(self):
            app = StsCountingApp(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    server = CountingMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def eks_patch(req):
    from moto.eks.models import eks_backends

    account = str(req.get("account") or "123456789012")
    region = req.get("region") or "us-east-1"
    name = req.get("name")
    backend = eks_backends[account][region]
    cluster = backend.clusters.get(name)
    if cluster is None:
        return None
    cluster.endpoint = req.get("endpoint") or f"{STATE.kube_url}/eks/{name}"
    cluster.certificate_authority = {"data": req.get("ca_data") or STATE.ca_b64}
    if req.get("status"):
        cluster.status = req["status"]
    return {"name": name, "account": account, "region": region,
            "endpoint": cluster.endpoint, "status": cluster.status}


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if VERBOSE:
            super().handle_error(request, client_address)


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fleetctx-fake"
    sys_version = ""

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's
        # algorithm and delayed ACKs add ~40 ms to keep-alive responses.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if VERBOSE:
            sys.stderr.write("fakes: %s %s\n" % (self.address_string(), fmt % args))

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send_json(self, status, obj, headers=()):
        data = (json.dumps(obj) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def bearer(self):
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return None


OAUTH_ERRORS = {400: "invalid_grant", 401: "invalid_client", 403: "access_denied",
                429: "rate_limit_exceeded", 503: "temporarily_unavailable"}
RPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
              404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
              501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def rpc_error(code, message):
    return {"error": {"code": code, "message": message, "status": RPC_STATUS.get(code, "UNKNOWN")}}


GAT_RE = re.compile(r"^/v1/projects/-/serviceAccounts/([^/]+):generateAccessToken$")
LIFETIME_RE = re.compile(r"^(\d+)(?:\.\d+)?s$")


class GoogleHandler(BaseHandler):
    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_stats":
            with STATE.lock:
                stats = json.loads(json.dumps(STATE.stats))
            return self.send_json(200, stats)
        if path == "/_tokens":
            with STATE.lock:
                toks = [dict(rec, token=t) for t, rec in STATE.tokens.items()]
            return self.send_json(200, {"tokens": toks})
        if path == "/healthz":
            return self.send_json(200, {"ok": True})
        return self.send_json(404, rpc_error(404, f"no route GET {path}"))

    def do_POST(self):
        raw_path = urllib.parse.urlsplit(self.path).path
        path = urllib.parse.unquote(raw_path)
        body = self.read_body()
        if path == "/token":
            return self.token(body)
        m = GAT_RE.match(path)
        if m:
            return self.generate_access_token(m.group(1), body)
        if path == "/_config":
            return self.config(body)
        if path == "/_reset":
            STATE.reset()
            return self.send_json(200, {"ok": True})
        if path == "/_eks/patch":
            return self.eks_patch(body)
        return self.send_json(404, rpc_error(404, f"no route POST {path}"))

    # -- /token ----------------------------------------------------------
    def token(self, body):
        STATE.bump("token_requests")
        self.delay()
        status = STATE.take_fault("token")
        if status:
            err = OAUTH_ERRORS.get(status, "server_error" if status >= 500 else "invalid_request")
            return self.send_json(status, {"error": err, "error_description": "injected failure"})
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if (form.get("grant_type") or [""])[0] != JWT_BEARER:
            return self.send_json(400, {"error": "unsupported_grant_type",
                                        "error_description": "Invalid grant_type"})
        assertion = (form.get("assertion") or [""])[0]
        try:
            claims = verify_jwt(assertion, STATE.sa_public_keys, STATE.token_uri,
                                check_time=STATE.check_jwt_time)
        except ValueError as e:
            return self.send_json(400, {"error": "invalid_grant", "error_description": str(e)})
        with STATE.lock:
            expires_in = STATE.expires_in
        tok = STATE.issue("fake", claims["iss"], claims["_scopes"],
                          time.time() + expires_in, "jwt-bearer")
        vlog(f"issued token #{STATE.token_seq} to {claims['iss']}")
        return self.send_json(200, {"access_token": tok, "expires_in": expires_in,
                                    "token_type": "Bearer"})

    # -- generateAccessToken --------------------------------------------------
    def generate_access_token(self, email, body):
        STATE.bump("generate_access_token_requests")
        self.delay()
        status = STATE.take_fault("generateAccessToken")
        if status:
            return self.send_json(status, rpc_error(status, "injected failure"))
        src = STATE.google_token(self.bearer() or "")
        if src is None:
            return self.send_json(401, rpc_error(
                401, "Request had invalid authentication credentials. Expected OAuth 2 access "
                     "token, login cookie or other valid authentication credential."))
        with STATE.lock:
            denied = email in STATE.denied_impersonation
        if denied:
            return self.send_json(403, rpc_error(
                403, "Permission 'iam.serviceAccounts.getAccessToken' denied on resource "
                     "(or it may not exist)."))
        try:
            req = json.loads(body or b"{}")
            scopes = req.get("scope") or []
            if isinstance(scopes, str):
                scopes = [scopes]
            lifetime = req.get("lifetime") or "3600s"
        except (ValueError, AttributeError):
            return self.send_json(400, rpc_error(400, "Invalid JSON payload received."))
        if not scopes:
            return self.send_json(400, rpc_error(400, "Scope required."))
        lm = LIFETIME_RE.match(str(lifetime))
        if not lm or not (1 <= int(lm.group(1)) <= 43200):
            return self.send_json(400, rpc_error(400, f"Invalid lifetime {lifetime!r}."))
        expires_at = int(time.time()) + int(lm.group(1))
        tok = STATE.issue("imp", email, scopes, expires_at, src["email"])
        return self.send_json(200, {"accessToken": tok, "expireTime": rfc3339(expires_at)})

    # -- control -----------------------------------------------------------
    def config(self, body):
        try:
            req = json.loads(body or b"{}")
            assert isinstance(req, dict)
        except (ValueError, AssertionError):
            return self.send_json(400, {"error": "body must be a JSON object"})
        with STATE.lock:
            if "expires_in" in req:
                STATE.expires_in = int(req["expires_in"])
            if "delay_ms" in req:
                STATE.delay_ms = int(req["delay_ms"])
            if "check_jwt_time" in req:
                STATE.check_jwt_time = bool(req["check_jwt_time"])
            if "deny_impersonation" in req:
                STATE.denied_impersonation = set(req["deny_impersonation"] or [])
            fails = req.get("fail")
            if isinstance(fails, dict):
                fails = [fails]
            for f in fails or []:
                route = f.get("route")
                if route not in ("token", "generateAccessToken", "kube"):
                    return self.send_json(400, {"error": f"unknown route {route!r}"})
                STATE.faults[route] = [int(f.get("status", 503)), int(f.get("count", 1))]
            if req.get("revoke_tokens"):
                for rec in STATE.tokens.values():
                    rec["revoked"] = True
            out = {"expires_in": STATE.expires_in, "delay_ms": STATE.delay_ms,
                   "check_jwt_time": STATE.check_jwt_time,
                   "faults": {k: {"status": v[0], "count": v[1]} for k, v in STATE.faults.items()}}
        return self.send_json(200, out)

    def eks_patch(self, body):
        if not STATE.moto_enabled:
            return self.send_json(409, {"error": "moto is not running (--no-moto)"})
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return self.send_json(400, {"error": "body must be JSON"})
        if not isinstance(req, dict) or not req.get("name"):
            return self.send_json(400, {"error": "name is required"})
        out = eks_patch(req)
        if out is None:
            return self.send_json(404, {"error": f"no such cluster {req.get('name')!r}"})
        return self.send_json(200, out)

    def delay(self):
        with STATE.lock:
            d = STATE.delay_ms
        if d > 0:
            time.sleep(d / 1000.0)


# ---------------------------------------------------------------------------
# Kubernetes API fake
# ---------------------------------------------------------------------------

K8S_UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
NAMESPACES = ("default", "kube-system")
CREATED = "2024-01-01T00:00:00Z"
PREFIX_RE = re.compile(r"^/(gke|eks)/([^/]+)(/.*)?$")


def k8s_status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def ns_object(name):
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "uid": hashlib.md5(name.encode()).hexdigest(),
                         "resourceVersion": "1", "creationTimestamp": CREATED,
                         "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def ns_table(names):
    rows = []
    for n in names:
        obj = ns_object(n)
        rows.append({"cells": [n, "Active", "1d"],
                     "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                "metadata": obj["metadata"]}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1"},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
                {"name": "Status", "type": "string", "format": "", "description": "Phase", "priority": 0},
                {"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}],
            "rows": rows}


class KubeHandler(BaseHandler):
    def setup(self):
        super().setup()
        self.connection.settimeout(30)

    def do_GET(self):
        self.handle_kube()

    def do_HEAD(self):
        self.handle_kube()

    def do_POST(self):
        self.read_body()
        self.handle_kube()

    do_PUT = do_PATCH = do_DELETE = do_POST

    def handle_kube(self):
        STATE.bump("kube_requests")
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path
        kind, cluster = None, None
        m = PREFIX_RE.match(path)
        if m:
            kind, cluster, path = m.group(1), urllib.parse.unquote(m.group(2)), m.group(3) or "/"
        status = STATE.take_fault("kube")
        if status:
            return self.send_json(status, k8s_status(status, "InternalError", "injected failure"))
        ident = self.authenticate(kind, cluster)
        if ident is None:
            STATE.bump("kube_unauthorized")
            return self.send_json(401, K8S_UNAUTHORIZED)
        token_kind, who = ident
        STATE.bump("kube_token_kinds", token_kind)
        STATE.bump("kube_identities", who)
        if self.command not in ("GET", "HEAD"):
            return self.send_json(405, k8s_status(405, "MethodNotAllowed",
                                                  "the fake only serves GET"))
        return self.route(path.rstrip("/") or "/")

    def authenticate(self, prefix_kind, cluster):
        tok = self.bearer()
        if not tok:
            return None
        if tok.startswith(EKS_PREFIX):
            if prefix_kind == "gke":
                return None
            try:
                akid = verify_eks_token(tok, cluster if prefix_kind == "eks" else None,
                                        STATE.aws_lookup)
            except EksReject as e:
                vlog(f"kube: EKS token rejected: {e}")
                return None
            return "eks", akid
        if prefix_kind == "eks":
            return None
        rec = STATE.google_token(tok)
        if rec is None:
            vlog("kube: unknown, revoked or expired Google token")
            return None
        if CLOUD_PLATFORM not in rec["scopes"]:
            vlog("kube: Google token lacks the cloud-platform scope")
            return None
        return "gke", rec["email"]

    def route(self, path):
        host = f"127.0.0.1:{self.server.server_address[1]}"
        if path == "/version":
            return self.send_json(200, {
                "major": "1", "minor": "37", "gitVersion": "v1.37.0-fleetctx-fake",
                "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": CREATED,
                "goVersion": "go1.25.0", "compiler": "gc", "platform": "linux/amd64"})
        if path == "/api":
            return self.send_json(200, {
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
        if path == "/apis":
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if path == "/api/v1":
            return self.send_json(200, {
                "kind": "APIResourceList", "groupVersion": "v1",
                "resources": [{"name": "namespaces", "singularName": "namespace",
                               "namespaced": False, "kind": "Namespace",
                               "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                               "shortNames": ["ns"]}]})
        if path == "/api/v1/namespaces":
            if "as=Table" in self.headers.get("Accept", ""):
                return self.send_json(200, ns_table(NAMESPACES))
            return self.send_json(200, {"kind": "NamespaceList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": "1"},
                                        "items": [ns_object(n) for n in NAMESPACES]})
        m = re.match(r"^/api/v1/namespaces/([^/]+)$", path)
        if m:
            name = m.group(1)
            if name not in NAMESPACES:
                return self.send_json(404, k8s_status(404, "NotFound",
                                                      f'namespaces "{name}" not found'))
            if "as=Table" in self.headers.get("Accept", ""):
                return self.send_json(200, ns_table([name]))
            return self.send_json(200, ns_object(name))
        return self.send_json(404, k8s_status(404, "NotFound", "the server could not find the "
                                                               "requested resource"))


class TLSServer(QuietServer):
    def __init__(self, addr, handler, ctx):
        super().__init__(addr, handler)
        # Handshake lazily in the handler thread, so a slow client cannot stall accept().
        self.socket = ctx.wrap_socket(self.socket, server_side=True,
                                      do_handshake_on_connect=False)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def google_token_helper(key_file, scopes):
    from cryptography.hazmat.primitives import serialization

    with open(key_file) as f:
        key = json.load(f)
    priv = serialization.load_pem_private_key(key["private_key"].encode(), None)
    iat = int(time.time())
    jwt = sign_jwt(priv, {"iss": key["client_email"], "aud": key["token_uri"],
                          "scope": " ".join(scopes), "iat": iat, "exp": iat + 3595})
    data = urllib.parse.urlencode({"grant_type": JWT_BEARER, "assertion": jwt}).encode()
    req = urllib.request.Request(key["token_uri"], data=data,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as r:
        print(json.load(r)["access_token"])
    return 0


def parse_aws_key(s):
    parts = s.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError("expected ACCESS_KEY_ID:SECRET[:SESSION_TOKEN]")
    return parts[0], parts[1], (parts[2] if len(parts) == 3 and parts[2] else None)


def main(argv=None):
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="state directory (created if missing)")
    ap.add_argument("--aws-key", action="append", default=[], type=parse_aws_key,
                    metavar="AKID:SECRET[:SESSION_TOKEN]")
    ap.add_argument("--no-moto", action="store_true", help="do not start moto")
    ap.add_argument("--no-stdin-watch", action="store_true",
                    help="ignore stdin; serve until SIGTERM/SIGINT")
    ap.add_argument("--verbose", action="store_true", help="log to stderr")
    ap.add_argument("--self-test", action="store_true", help="run the verifier self-test")
    ap.add_argument("--google-token", metavar="KEYFILE",
                    help="print an access token for this service-account key file")
    ap.add_argument("--scope", action="append", default=None,
                    help="scope for --google-token (repeatable; default cloud-platform)")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose

    if args.self_test:
        return self_test()
    if args.google_token:
        return google_token_helper(args.google_token, args.scope or [CLOUD_PLATFORM])
    if not args.dir:
        ap.error("--dir is required")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    state_dir = os.path.abspath(args.dir)
    os.makedirs(state_dir, exist_ok=True)
    for akid, secret, tok in args.aws_key:
        STATE.aws_keys[akid] = (secret, tok)

    # moto's import is the slow part: start it first, in parallel with key generation.
    moto_box = {}

    def run_moto():
        try:
            moto_box["server"], moto_box["url"] = start_moto()
        except Exception as e:  # reported below
            moto_box["error"] = e

    moto_thread = None
    if not args.no_moto:
        moto_thread = threading.Thread(target=run_moto, daemon=True)
        moto_thread.start()

    google = QuietServer(("127.0.0.1", 0), GoogleHandler)
    google_url = f"http://127.0.0.1:{google.server_address[1]}"
    STATE.token_uri = f"{google_url}/token"

    ca_file, cert_file, key_file = make_tls(state_dir)
    with open(ca_file, "rb") as f:
        STATE.ca_b64 = base64.b64encode(f.read()).decode()
    sa_paths = [os.path.join(state_dir, "sa-key.json"), os.path.join(state_dir, "sa-key-2.json")]
    for path, email in zip(sa_paths, SA_EMAILS):
        key = make_sa_key(path, email, STATE.token_uri, google_url)
        STATE.sa_public_keys[email] = key.public_key()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    kube = TLSServer(("127.0.0.1", 0), KubeHandler, ctx)
    STATE.kube_url = f"https://127.0.0.1:{kube.server_address[1]}"

    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
               for s in (google, kube)]
    for t in threads:
        t.start()

    info = {"google": google_url, "kube": STATE.kube_url}
    if moto_thread is not None:
        moto_thread.join()
        if "error" in moto_box:
            print(f"fakes: moto failed to start: {moto_box['error']!r}", file=sys.stderr)
            return 1
        STATE.moto_enabled = True
        info["moto"] = moto_box["url"]
    info.update({
        "ca_file": ca_file,
        "ca_b64": STATE.ca_b64,
        "sa_key": sa_paths[0],
        "sa_key_2": sa_paths[1],
        "sa_email": SA_EMAILS[0],
        "sa_email_2": SA_EMAILS[1],
    })
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()

    if not args.no_stdin_watch:
        def watch_stdin():
            try:
                while os.read(sys.stdin.fileno(), 4096):
                    pass
            except OSError:
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()

    while not stop.wait(0.5):
        pass
    # Every server runs on a daemon thread: returning ends the process at once
    # (orderly shutdown() would wait out each serve_forever poll interval).
    vlog("shutting down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
