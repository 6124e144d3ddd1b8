#!/usr/bin/env python3
"""Loopback fakes for fleetctx's integration tests.

Starts, on 127.0.0.1 with OS-chosen ports:
  * a Google fake (plain HTTP): OAuth2 JWT-bearer token endpoint, IAM Credentials
    generateAccessToken, Container API v1 clusters.list, Resource Manager v3
    projects.search, and the control routes /_config /_reset /_stats /_tokens
    /_gke/fleet /_eks/patch /_eks/create /_eks/delete;
  * a Kubernetes API server fake (HTTPS) that checks bearer tokens: Google tokens
    issued by the Google fake, and EKS `k8s-aws-v1.` tokens whose SigV4 presigned
    URL it verifies by recomputing the signature;
  * moto (in-process, unless --no-moto) with every STS Action and EKS call counted,
    optional latency, and per-region "not enabled" / failure injection.

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
# SigV4 credential scope: AKID/YYYYMMDD/REGION/SERVICE/aws4_request
CRED_SCOPE_RE = re.compile(r"([^/,\s=]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")

DEFAULT_RM_PAGE_SIZE = 2
GKE_DEFAULT_LOCATION = "europe-west1-b"
GKE_DEFAULT_VERSION = "1.33.5-gke.1080000"
GKE_BENCH_LOCATIONS = ("europe-west1-b", "us-central1", "asia-northeast1-a")
PROJECT_STATES = ("ACTIVE", "DELETE_REQUESTED", "DELETE_IN_PROGRESS")
EKS_STATUSES = ("CREATING", "ACTIVE", "DELETING", "FAILED", "UPDATING", "PENDING")

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
        # GKE fleet: {"rm_page_size": n, "projects": {project id: normalized project}}
        self.fleet = {"rm_page_size": DEFAULT_RM_PAGE_SIZE, "projects": {}}
        self.reset()

    def reset(self):
        with self.lock:
            self.expires_in = DEFAULT_EXPIRES_IN
            self.delay_ms = 0
            self.check_jwt_time = True
            self.faults = {}  # route -> [status, remaining]
            self.denied_impersonation = set()
            self.api_delay_ms = 0
            # Per-cluster API server behaviour, by the name in its /gke|eks/NAME prefix:
            # {"delay_ms", "status", "forbid": [resource], "nodes", "pods", "namespaces"}.
            self.kube_clusters = {}
            self.aws_disabled_regions = set()
            self.aws_revoked_keys = set()  # access key ids every AWS call rejects
            self.aws_denied_roles = set()  # role ARNs AssumeRole refuses
            self.sso = {"accounts": [], "tokens": {}, "refresh_tokens": set(), "page_size": 2}
            self.aws_fail_regions = {}  # region -> HTTP status
            self.stats = {
                "token_requests": 0,
                "generate_access_token_requests": 0,
                "sts": {},
                "kube_requests": 0,
                "kube_unauthorized": 0,
                "kube_token_kinds": {"gke": 0, "eks": 0},
                "kube_identities": {},
                "container": {},
                "rm_pages": 0,
                "google_api_identities": {},
                "eks": {},
                "eks_regions": {},
                "sso": {},
                "metadata_token_requests": 0,
            }

    def bump(self, key, sub=None):
        with self.lock:
            if sub is None:
                self.stats[key] += 1
            else:
                d = self.stats[key]
                d[sub] = d.get(sub, 0) + 1

    def api_delay(self):
        """Sleep api_delay_ms (Container, Resource Manager and moto requests)."""
        with self.lock:
            d = self.api_delay_ms
        if d > 0:
            time.sleep(d / 1000.0)

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


EKS_ERROR_TYPES = {500: "ServerException", 503: "ServiceUnavailableException",
                   429: "TooManyRequestsException", 403: "AccessDeniedException",
                   400: "InvalidParameterException", 404: "ResourceNotFoundException"}
INVALID_TOKEN_MSG = "The security token included in the request is invalid."


def eks_action(method, path):
    """EKS operation name from method + path (rest-json routes)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] != ["clusters"]:
        return "Other"
    if len(parts) == 1:
        return {"GET": "ListClusters", "POST": "CreateCluster"}.get(method, "Other")
    if len(parts) == 2:
        return {"GET": "DescribeCluster", "DELETE": "DeleteCluster"}.get(method, "Other")
    return "Other"


class MotoWrapperApp:
    """WSGI middleware in front of moto: counts STS Actions and EKS calls, sleeps
    api_delay_ms, and answers for disabled / failing regions (from the SigV4
    credential scope) before moto sees the request. /moto-api/ passes straight on."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self.app(environ, start_response)
        try:
            service, region, akid = self._inspect(environ)
        except Exception as e:  # never break moto over bookkeeping
            vlog(f"moto request inspection failed: {e}")
            service, region, akid = None, None, None
        STATE.api_delay()
        with STATE.lock:
            disabled = (region in STATE.aws_disabled_regions
                        or (akid is not None and akid in STATE.aws_revoked_keys))
            denied_role = environ.get("fleetctx.role_arn") in STATE.aws_denied_roles
            fail = STATE.aws_fail_regions.get(region) if region else None
        if denied_role:
            return self._error(start_response, "sts", 403, "AccessDenied", "AccessDenied",
                               "User is not authorized to perform: sts:AssumeRole on resource: "
                               + environ["fleetctx.role_arn"])
        if disabled:
            return self._error(start_response, service, 403, "UnrecognizedClientException",
                               "InvalidClientTokenId", INVALID_TOKEN_MSG)
        if fail:
            return self._error(start_response, service, fail,
                               EKS_ERROR_TYPES.get(fail, "InternalFailure"),
                               "ServiceUnavailable" if fail == 503 else "InternalFailure",
                               "injected failure")
        return self.app(environ, start_response)

    @staticmethod
    def _error(start_response, service, status, rest_type, query_code, message):
        reason = {403: "Forbidden", 500: "Internal Server Error",
                  503: "Service Unavailable"}.get(status, "Error")
        rid = secrets.token_hex(16)
        rid = f"{rid[:8]}-{rid[8:12]}-{rid[12:16]}-{rid[16:20]}-{rid[20:]}"
        if service == "sts":  # query protocol: XML error
            body = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                    f"<Error><Type>Sender</Type><Code>{query_code}</Code>"
                    f"<Message>{message}</Message></Error>"
                    f"<RequestId>{rid}</RequestId></ErrorResponse>").encode()
            headers = [("Content-Type", "text/xml")]
        else:  # rest-json (EKS)
            body = json.dumps({"message": message}).encode()
            headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", rest_type)]
        headers += [("x-amzn-RequestId", rid), ("Content-Length", str(len(body)))]
        start_response(f"{status} {reason}", headers)
        return [body]

    def _inspect(self, environ):
        auth = environ.get("HTTP_AUTHORIZATION", "")
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        action = (query.get("Action") or [None])[0]
        scope = auth or (query.get("X-Amz-Credential") or [""])[0]
        m = CRED_SCOPE_RE.search(scope)
        region, service = (m.group(3), m.group(4)) if m else (None, None)
        akid = m.group(1) if m else None
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
            if action == "AssumeRole":
                environ["fleetctx.role_arn"] = (form.get("RoleArn") or [""])[0]
        is_sts = service == "sts"
        if not scope and action in ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"):
            is_sts, service = True, "sts"  # unsigned STS calls
        if is_sts and action:
            STATE.bump("sts", action)
        if service == "eks":
            STATE.bump("eks", eks_action(environ.get("REQUEST_METHOD", "GET"),
                                         environ.get("PATH_INFO", "")))
            STATE.bump("eks_regions", region)
        return service, region, akid


StsCountingApp = MotoWrapperApp  # former name


def warm_moto(dispatcher):
    """One EKS ListClusters/DescribeCluster and one STS call, straight into moto (not
    counted): the first request of a service loads its botocore model and builds its
    app (~0.2 s); 100 parallel first requests doing that at once take seconds."""
    try:
        from werkzeug.test import Client

        client = Client(dispatcher)
        day = time.strftime("%Y%m%d", time.gmtime())

        def auth(service):
            return {"Authorization": f"AWS4-HMAC-SHA256 Credential=AKIAWARMUPWARMUPWARM/{day}/"
                                     f"us-east-1/{service}/aws4_request, SignedHeaders=host, "
                                     f"Signature={'0' * 64}"}

        client.get("/clusters", headers=auth("eks"))
        client.get("/clusters/warm-up", headers=auth("eks"))
        client.post("/", data="Action=GetCallerIdentity&Version=2011-06-15",
                    headers=dict(auth("sts"),
                                 **{"Content-Type": "application/x-www-form-urlencoded"}))
    except Exception as e:
        vlog(f"moto warm-up failed: {e!r}")


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
            dispatcher = DomainDispatcherApplication(create_backend_app)
            warm_moto(dispatcher)
            app = MotoWrapperApp(dispatcher)
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


class BadRequest(Exception):
    pass


def _eks_target(req):
    from moto.eks.models import eks_backends

    account = str(req.get("account") or "123456789012")
    region = req.get("region") or "us-east-1"
    name = req.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("name is required")
    if not re.fullmatch(r"\d{12}", account):
        raise BadRequest(f"account {account!r} is not 12 digits")
    try:
        backend = eks_backends[account][region]
    except KeyError:
        raise BadRequest(f"moto knows no region {region!r}")
    return account, region, name, backend


def eks_create(req):
    """Create (or update, when it exists) an EKS cluster in moto's backend through
    moto's own create_cluster, then point it at the kube fake."""
    allowed = {"account", "region", "name", "status", "point_at_kube", "endpoint", "ca_data",
               "version", "tags", "endpoint_public_access", "endpoint_private_access",
               "role_arn"}
    unknown = set(req) - allowed
    if unknown:
        raise BadRequest(f"unknown keys {sorted(unknown)}")
    account, region, name, backend = _eks_target(req)
    status = req.get("status") or "ACTIVE"
    if status not in EKS_STATUSES:
        raise BadRequest(f"status must be one of {list(EKS_STATUSES)}")
    tags = req.get("tags") or {}
    if not isinstance(tags, dict):
        raise BadRequest("tags must be an object")
    cluster = backend.clusters.get(name)
    existed = cluster is not None
    if cluster is None:
        suffix = hashlib.sha256(f"{account}/{region}/{name}".encode()).hexdigest()
        vpc = {
            "subnetIds": [f"subnet-{suffix[:17]}", f"subnet-{suffix[17:34]}"],
            "securityGroupIds": [],
            "clusterSecurityGroupId": f"sg-{suffix[34:51]}",
            "vpcId": f"vpc-{suffix[51:64]}",
            "endpointPublicAccess": bool(req.get("endpoint_public_access", True)),
            "endpointPrivateAccess": bool(req.get("endpoint_private_access", False)),
            "publicAccessCidrs": ["0.0.0.0/0"],
        }
        role_arn = req.get("role_arn") or f"arn:aws:iam::{account}:role/eks-cluster-role"
        cluster = backend.create_cluster(name=name, role_arn=role_arn,
                                         resources_vpc_config=vpc,
                                         version=req.get("version"), tags=dict(tags))
    else:
        if req.get("version"):
            cluster.version = req["version"]
        if tags:
            cluster.tags = dict(tags)
    cluster.status = status
    if "endpoint" in req:  # explicit wins; null or "" clears it
        cluster.endpoint = req["endpoint"] or None
    elif req.get("point_at_kube", True):
        cluster.endpoint = f"{STATE.kube_url}/eks/{name}"
    if "ca_data" in req:
        cluster.certificate_authority = {"data": req["ca_data"]} if req["ca_data"] else {}
    elif req.get("point_at_kube", True):
        cluster.certificate_authority = {"data": STATE.ca_b64}
    return {"name": name, "account": account, "region": region, "arn": cluster.arn,
            "endpoint": cluster.endpoint, "status": cluster.status, "existed": existed}


def eks_delete(req):
    account, region, name, backend = _eks_target(req)
    cluster = backend.clusters.pop(name, None)
    if cluster is None:
        return None
    backend.cluster_count -= 1
    return {"name": name, "account": account, "region": region, "deleted": True}


# ---------------------------------------------------------------------------
# GKE fleet (Container API v1 + Resource Manager v3 state)
# ---------------------------------------------------------------------------

GKE_CLUSTER_KEYS = {"name", "location", "endpoint", "ca", "status", "version", "labels",
                    "private_endpoint", "dns_endpoint", "allow_external_traffic",
                    "ip_endpoints_enabled", "extra"}
GKE_PROJECT_KEYS = {"state", "number", "display_name", "labels", "clusters", "missing_zones",
                    "error", "error_count"}


def project_number(project_id):
    h = int(hashlib.sha256(project_id.encode()).hexdigest()[:12], 16)
    return str(100000000000 + h % 900000000000)


def normalize_gke_cluster(c):
    if not isinstance(c, dict):
        raise BadRequest("a cluster must be an object")
    unknown = set(c) - GKE_CLUSTER_KEYS
    if unknown:
        raise BadRequest(f"unknown cluster keys {sorted(unknown)}")
    if not isinstance(c.get("name"), str) or not c["name"]:
        raise BadRequest("cluster name is required")
    default_endpoint = STATE.kube_url.split("://", 1)[1] if STATE.kube_url else ""
    out = {
        "name": c["name"],
        "location": str(c.get("location") or GKE_DEFAULT_LOCATION),
        # absent: the defaults; explicit null or "": left out of the answer
        "endpoint": c.get("endpoint", default_endpoint) or "",
        "ca": c.get("ca", STATE.ca_b64) or "",
        "status": c.get("status") or "RUNNING",
        "version": str(c.get("version") or GKE_DEFAULT_VERSION),
        "labels": dict(c.get("labels") or {}),
    }
    for k in ("private_endpoint", "dns_endpoint"):
        out[k] = c.get(k) or None
    for k in ("allow_external_traffic", "ip_endpoints_enabled"):
        out[k] = None if c.get(k) is None else bool(c[k])
    extra = c.get("extra") or {}
    if not isinstance(extra, dict):
        raise BadRequest("extra must be an object")
    out["extra"] = extra
    return out


def normalize_gke_project(pid, p):
    if p is None:
        p = {}
    if not isinstance(p, dict):
        raise BadRequest(f"project {pid!r} must be an object")
    unknown = set(p) - GKE_PROJECT_KEYS
    if unknown:
        raise BadRequest(f"unknown keys {sorted(unknown)} in project {pid!r}")
    state = p.get("state") or "ACTIVE"
    if state not in PROJECT_STATES:
        raise BadRequest(f"state must be one of {list(PROJECT_STATES)}")
    err = p.get("error")
    if isinstance(err, str) and err.isdigit():
        err = int(err)
    if err is not None and err not in ("SERVICE_DISABLED", "PERMISSION_DENIED") and not (
            isinstance(err, int) and 400 <= err <= 599):
        raise BadRequest("error must be null, SERVICE_DISABLED, PERMISSION_DENIED or an "
                         "HTTP status 400..599")
    clusters = p.get("clusters") or []
    if not isinstance(clusters, list):
        raise BadRequest("clusters must be a list")
    return {
        "state": state,
        "number": str(p.get("number") or project_number(pid)),
        "display_name": str(p.get("display_name") or pid),
        "labels": dict(p.get("labels") or {}),
        "clusters": [normalize_gke_cluster(c) for c in clusters],
        "missing_zones": [str(z) for z in (p.get("missing_zones") or [])],
        "error": err,
        # error_count: the error answers only this many requests, then the project
        # behaves normally (null: always)
        "error_count": None if p.get("error_count") is None else int(p["error_count"]),
    }


def set_gke_fleet(req):
    """POST /_gke/fleet: replace the fleet (or, with "merge": true, upsert projects
    and/or change rm_page_size)."""
    if not isinstance(req, dict):
        raise BadRequest("body must be a JSON object")
    unknown = set(req) - {"rm_page_size", "projects", "merge"}
    if unknown:
        raise BadRequest(f"unknown keys {sorted(unknown)}")
    projects = req.get("projects") or {}
    if not isinstance(projects, dict):
        raise BadRequest("projects must be an object {project id: {...}}")
    norm = {str(pid): normalize_gke_project(str(pid), p) for pid, p in projects.items()}
    with STATE.lock:
        if req.get("merge"):
            STATE.fleet["projects"].update(norm)
            if req.get("rm_page_size") is not None:
                STATE.fleet["rm_page_size"] = max(1, int(req["rm_page_size"]))
        else:
            STATE.fleet = {"rm_page_size": max(1, int(req.get("rm_page_size")
                                                      or DEFAULT_RM_PAGE_SIZE)),
                           "projects": norm}
        return json.loads(json.dumps(STATE.fleet))


def bench_fleet(n_projects, n_clusters):
    width = max(3, len(str(max(n_projects - 1, 0))))
    projects = {}
    for i in range(n_projects):
        pid = f"bench-{i:0{width}d}"
        projects[pid] = {"clusters": [
            {"name": f"cluster-{j}", "location": GKE_BENCH_LOCATIONS[j % len(GKE_BENCH_LOCATIONS)]}
            for j in range(n_clusters)]}
    return projects


def render_gke_cluster(project, c):
    loc, name = c["location"], c["name"]
    zonal = re.search(r"-[a-z]$", loc) is not None
    v = c["version"]
    out = {
        "name": name,
        "id": hashlib.sha256(f"{project}/{loc}/{name}".encode()).hexdigest()[:32],
        "location": loc,
        "zone": loc,
        "status": c["status"],
        "currentMasterVersion": v,
        "currentNodeVersion": v,
        "initialClusterVersion": v,
        "createTime": CREATED,
        "selfLink": f"https://container.googleapis.com/v1/projects/{project}/"
                    f"{'zones' if zonal else 'locations'}/{loc}/clusters/{name}",
        "masterAuth": {},
    }
    if c["endpoint"]:
        out["endpoint"] = c["endpoint"]
    if c["ca"]:
        out["masterAuth"]["clusterCaCertificate"] = c["ca"]
    if c["labels"]:
        out["resourceLabels"] = c["labels"]
    if c["private_endpoint"]:
        out["privateClusterConfig"] = {"privateEndpoint": c["private_endpoint"]}
    cpe = {}
    dns = {}
    if c["dns_endpoint"]:
        dns["endpoint"] = c["dns_endpoint"]
    if c["allow_external_traffic"] is not None:
        dns["allowExternalTraffic"] = c["allow_external_traffic"]
    if dns:
        cpe["dnsEndpointConfig"] = dns
    if c["ip_endpoints_enabled"] is not None:
        cpe["ipEndpointsConfig"] = {"enabled": c["ip_endpoints_enabled"]}
    if cpe:
        out["controlPlaneEndpointsConfig"] = cpe
    out.update(c["extra"])
    return out


def render_rm_project(pid, p):
    out = {
        "name": f"projects/{p['number']}",
        "parent": "organizations/100000000001",
        "projectId": pid,
        "state": p["state"],
        "displayName": p["display_name"],
        "createTime": CREATED,
        "updateTime": CREATED,
        "etag": 'W/"' + hashlib.md5(pid.encode()).hexdigest()[:16] + '"',
    }
    if p["state"] != "ACTIVE":
        out["deleteTime"] = CREATED
    if p["labels"]:
        out["labels"] = p["labels"]
    return out


def rm_query_matches(query, pid, p):
    """A small subset of projects.search's query language: space- or AND-separated
    terms state:S, id:X / projectId:X, labels.K[:V]; other terms are ignored."""
    for term in re.split(r"\s+(?:AND\s+)?", query.strip()):
        if not term:
            continue
        m = re.match(r"^([A-Za-z_.]+?)\s*[:=]\s*(.*)$", term)
        if not m:
            if term.startswith("labels."):
                if term[len("labels."):] not in p["labels"]:
                    return False
            continue
        key, val = m.group(1), m.group(2).strip('"')
        lk = key.lower()
        if lk in ("state", "lifecyclestate"):
            if p["state"].lower() != val.lower():
                return False
        elif lk in ("id", "projectid"):
            if pid != val:
                return False
        elif key.startswith("labels."):
            lab = key[len("labels."):]
            if lab not in p["labels"] or (val not in ("*", "") and p["labels"][lab] != val):
                return False
    return True


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------


PORTAL_STS = []
PORTAL_STS_LOCK = threading.Lock()


def portal_sts():
    """The portal's one STS client on moto: building a boto3 client loads its
    service model, far more work than the call (and clients are thread-safe)."""
    with PORTAL_STS_LOCK:
        if not PORTAL_STS:
            import boto3
            PORTAL_STS.append(boto3.client(
                "sts", endpoint_url=STATE.moto_url, region_name="us-east-1",
                aws_access_key_id="AKIAFAKESSOPORTAL001", aws_secret_access_key="portal"))
        return PORTAL_STS[0]


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many parallel clients (sync benchmark) must not hit SYN drops

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
CONTAINER_LIST_RE = re.compile(r"^/v1/projects/([^/]+)/(?:locations|zones)/([^/]+)/clusters/?$")
CONTAINER_GET_RE = re.compile(r"^/v1/projects/([^/]+)/(?:locations|zones)/([^/]+)/clusters/([^/:]+)$")
RM_GET_RE = re.compile(r"^/v3/projects/([^/:]+)$")
UNAUTHENTICATED_MSG = ("Request had invalid authentication credentials. Expected OAuth 2 access "
                       "token, login cookie or other valid authentication credential.")
FAULT_ROUTES = ("token", "generateAccessToken", "kube", "container", "rm")
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
        if path == "/_gke/fleet":
            with STATE.lock:
                fleet = json.loads(json.dumps(STATE.fleet))
            return self.send_json(200, fleet)
        path = urllib.parse.unquote(path)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query,
                                      keep_blank_values=True)
        m = CONTAINER_LIST_RE.match(path)
        if m:
            return self.container(m.group(1), m.group(2), None)
        m = CONTAINER_GET_RE.match(path)
        if m:
            return self.container(m.group(1), m.group(2), m.group(3))
        if path.startswith("/sso/"):
            return self.sso_portal(path[len("/sso"):], query)
        if path == "/computeMetadata/v1/instance/service-accounts/default/token":
            return self.metadata_token(query)
        if path == "/v3/projects:search":
            return self.rm_search(query)
        m = RM_GET_RE.match(path)
        if m:
            return self.rm_get(m.group(1))
        return self.send_json(404, rpc_error(404, f"no route GET {path}"))

    def do_POST(self):
        raw_path = urllib.parse.urlsplit(self.path).path
        path = urllib.parse.unquote(raw_path)
        body = self.read_body()
        if path == "/token":
            return self.token(body)
        if path == "/oidc/token":
            return self.oidc_token(body)
        if path == "/_sso/setup":
            return self.sso_setup(body)
        m = GAT_RE.match(path)
        if m:
            return self.generate_access_token(m.group(1), body)
        if path == "/_kube/clusters":
            try:
                behaviours = json.loads(body or b"{}")
            except ValueError:
                behaviours = None
            if not isinstance(behaviours, dict):
                return self.send_json(400, {"error": "an object of cluster name: behaviour"})
            with STATE.lock:
                STATE.kube_clusters.update(behaviours)
            return self.send_json(200, {"clusters": sorted(STATE.kube_clusters)})
        if path == "/_config":
            return self.config(body)
        if path == "/_reset":
            STATE.reset()
            return self.send_json(200, {"ok": True})
        if path == "/_eks/patch":
            return self.eks_patch(body)
        if path in ("/_eks/create", "/_eks/delete"):
            return self.eks_create_delete(path, body)
        if path == "/_gke/fleet":
            try:
                req = json.loads(body or b"{}")
            except ValueError as e:
                return self.send_json(400, {"error": f"bad JSON: {e}"})
            try:
                out = set_gke_fleet(req)
            except (BadRequest, ValueError, TypeError) as e:
                return self.send_json(400, {"error": str(e)})
            return self.send_json(200, out)
        return self.send_json(404, rpc_error(404, f"no route POST {path}"))

    # -- The GCE/GKE metadata server --------------------------------------------
    def metadata_token(self, query):
        """The instance's service account (the first key's email) as the metadata
        server gives it: only with `Metadata-Flavor: Google`."""
        STATE.bump("metadata_token_requests")
        if self.headers.get("Metadata-Flavor") != "Google":
            return self.send_json(403, {"error": "Missing Metadata-Flavor:Google header"})
        scopes = ((query.get("scopes") or [""])[0]).split(",")
        scopes = [x for x in scopes if x] or ["https://www.googleapis.com/auth/cloud-platform"]
        with STATE.lock:
            expires_in = STATE.expires_in
        tok = STATE.issue("fake", SA_EMAILS[0], scopes, time.time() + expires_in, "metadata")
        return self.send_json(200, {"access_token": tok, "expires_in": expires_in,
                                    "token_type": "Bearer"})

    # -- IAM Identity Center: the SSO portal and SSO-OIDC ----------------------
    def sso_error(self, status, kind, message):
        return self.send_json(status, {"message": message}, [("x-amzn-ErrorType", kind)])

    def sso_setup(self, body):
        """`{"access_token", "expires_in", "refresh_token", "page_size", "accounts":
        [{"id", "name", "email", "roles": [...]}]}`: what one SSO login sees."""
        req = json.loads(body or b"{}")
        with STATE.lock:
            sso = STATE.sso
            if "accounts" in req:
                sso["accounts"] = [
                    {"accountId": str(a["id"]), "accountName": a.get("name", str(a["id"])),
                     "emailAddress": a.get("email", f"{a['id']}@example.com"),
                     "roles": list(a.get("roles", []))}
                    for a in req["accounts"]]
            if "access_token" in req:
                sso["tokens"][req["access_token"]] = time.time() + int(req.get("expires_in", 3600))
            if "refresh_token" in req:
                sso["refresh_tokens"].add(req["refresh_token"])
            if "page_size" in req:
                sso["page_size"] = int(req["page_size"])
            if req.get("expire_all"):
                for t in sso["tokens"]:
                    sso["tokens"][t] = 0
        return self.send_json(200, {"ok": True})

    def sso_portal(self, path, query):
        """GET /assignment/accounts, /assignment/roles, /federation/credentials, as
        the real portal (rest-json, `x-amz-sso_bearer_token`). Credentials are ones
        moto issued for the account (AssumeRole of the role there), so the API
        server fake can check every signature."""
        op = {"/assignment/accounts": "ListAccounts", "/assignment/roles": "ListAccountRoles",
              "/federation/credentials": "GetRoleCredentials"}.get(path)
        if op is None:
            return self.sso_error(404, "ResourceNotFoundException", f"no route {path}")
        STATE.bump("sso", op)
        STATE.api_delay()
        token = self.headers.get("x-amz-sso_bearer_token", "")
        with STATE.lock:
            expires = STATE.sso["tokens"].get(token)
            accounts = json.loads(json.dumps(STATE.sso["accounts"]))
            page_size = STATE.sso["page_size"]
        if expires is None or expires < time.time():
            return self.sso_error(401, "UnauthorizedException", "Session token not found or invalid")
        one = lambda k: (query.get(k) or [""])[0]
        def page(items, key):
            start = int(one("next_token") or 0)
            size = min(int(one("max_result") or page_size), page_size)
            out = {key: items[start:start + size]}
            if start + size < len(items):
                out["nextToken"] = str(start + size)
            return self.send_json(200, out)
        if op == "ListAccounts":
            return page([{k: a[k] for k in ("accountId", "accountName", "emailAddress")}
                         for a in accounts], "accountList")
        account = next((a for a in accounts if a["accountId"] == one("account_id")), None)
        if account is None:
            return self.sso_error(403, "ForbiddenException", "No access")
        if op == "ListAccountRoles":
            return page([{"roleName": r, "accountId": account["accountId"]}
                         for r in account["roles"]], "roleList")
        role = one("role_name")
        if role not in account["roles"]:
            return self.sso_error(403, "ForbiddenException", "No access")
        creds = portal_sts().assume_role(RoleArn=f"arn:aws:iam::{account['accountId']}:role/{role}",
                                RoleSessionName="sso-portal")["Credentials"]
        return self.send_json(200, {"roleCredentials": {
            "accessKeyId": creds["AccessKeyId"], "secretAccessKey": creds["SecretAccessKey"],
            "sessionToken": creds["SessionToken"],
            "expiration": int(creds["Expiration"].timestamp() * 1000)}})

    def oidc_token(self, body):
        """SSO-OIDC CreateToken with grant_type refresh_token (what refreshes an
        `aws sso login` token)."""
        STATE.bump("sso", "CreateToken")
        req = json.loads(body or b"{}")
        with STATE.lock:
            known = req.get("refreshToken") in STATE.sso["refresh_tokens"]
            if known and req.get("grantType") == "refresh_token":
                access = "fake-sso-" + secrets.token_hex(12)
                STATE.sso["tokens"][access] = time.time() + 3600
        if not known:
            return self.sso_error(400, "InvalidGrantException", "Invalid refresh token")
        return self.send_json(200, {"accessToken": access, "expiresIn": 3600,
                                    "tokenType": "Bearer", "refreshToken": req["refreshToken"]})

    # -- Container API v1 / Resource Manager v3 -------------------------------
    def google_api_auth(self):
        """The token record, or None after answering 401/403."""
        rec = STATE.google_token(self.bearer() or "")
        if rec is None:
            self.send_json(401, rpc_error(401, UNAUTHENTICATED_MSG))
            return None
        if CLOUD_PLATFORM not in rec["scopes"]:
            self.send_json(403, {"error": {
                "code": 403, "message": "Request had insufficient authentication scopes.",
                "status": "PERMISSION_DENIED",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                             "domain": "googleapis.com"}]}})
            return None
        STATE.bump("google_api_identities", rec["email"])
        return rec

    def container(self, project, location, name):
        STATE.bump("container", project)
        STATE.api_delay()
        status = STATE.take_fault("container")
        if status:
            return self.send_json(status, rpc_error(status, "injected failure"))
        if self.google_api_auth() is None:
            return
        denied = rpc_error(403, f"Required 'container.clusters.{'get' if name else 'list'}' "
                                f"permission for 'projects/{project}'.")
        with STATE.lock:
            p = STATE.fleet["projects"].get(project)
            if p is None:
                return self.send_json(403, denied)
            err = p["error"]
            if err is not None and p["error_count"] is not None:
                if p["error_count"] > 0:
                    p["error_count"] -= 1
                else:
                    err = None
            number = p["number"]
            clusters = [render_gke_cluster(project, c) for c in p["clusters"]
                        if location == "-" or c["location"] == location]
            missing = list(p["missing_zones"])
        if err == "SERVICE_DISABLED":
            return self.send_json(403, {"error": {
                "code": 403,
                "message": f"Kubernetes Engine API has not been used in project {number} "
                           "before or it is disabled. Enable it by visiting https://console."
                           "developers.google.com/apis/api/container.googleapis.com/overview?"
                           f"project={number} then retry. If you enabled this API recently, "
                           "wait a few minutes for the action to propagate to our systems and "
                           "retry.",
                "status": "PERMISSION_DENIED",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": "SERVICE_DISABLED", "domain": "googleapis.com",
                             "metadata": {"service": "container.googleapis.com",
                                          "consumer": f"projects/{number}"}}]}})
        if err == "PERMISSION_DENIED":
            return self.send_json(403, denied)
        if isinstance(err, int):
            msg = ("The service is currently unavailable." if err == 503
                   else "Internal error encountered." if err == 500 else "injected failure")
            return self.send_json(err, rpc_error(err, msg))
        if name is not None:
            for c in clusters:
                if c["name"] == name:
                    return self.send_json(200, c)
            return self.send_json(404, rpc_error(
                404, f"Not found: projects/{project}/locations/{location}/clusters/{name}."))
        out = {}
        if clusters:
            out["clusters"] = clusters
        if missing:
            out["missingZones"] = missing
        return self.send_json(200, out)

    def rm_search(self, query):
        STATE.bump("rm_pages")
        STATE.api_delay()
        status = STATE.take_fault("rm")
        if status:
            # Resource Manager says when to come back after a 429.
            headers = [("Retry-After", "1")] if status == 429 else []
            return self.send_json(status, rpc_error(status, "injected failure"), headers)
        if self.google_api_auth() is None:
            return
        q = (query.get("query") or [""])[0]
        token = (query.get("pageToken") or [""])[0]
        try:
            asked = int((query.get("pageSize") or ["0"])[0] or 0)
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode() \
                if token else "o:0"
            assert raw.startswith("o:")
            offset = int(raw[2:])
            assert offset >= 0 and asked >= 0
        except (ValueError, AssertionError, UnicodeDecodeError):
            return self.send_json(400, rpc_error(400, "Request contains an invalid argument."))
        with STATE.lock:
            size = STATE.fleet["rm_page_size"]
            if asked:
                size = min(size, asked)
            matched = [(pid, p) for pid, p in STATE.fleet["projects"].items()
                       if rm_query_matches(q, pid, p)]
            page = [render_rm_project(pid, p) for pid, p in matched[offset:offset + size]]
        out = {}
        if page:
            out["projects"] = page
        if offset + size < len(matched):
            out["nextPageToken"] = base64.urlsafe_b64encode(
                f"o:{offset + size}".encode()).decode().rstrip("=")
        return self.send_json(200, out)

    def rm_get(self, pid):
        STATE.api_delay()
        if self.google_api_auth() is None:
            return
        with STATE.lock:
            p = STATE.fleet["projects"].get(pid)
            out = render_rm_project(pid, p) if p is not None else None
        if out is None:
            return self.send_json(403, rpc_error(
                403, "The caller does not have permission"))
        return self.send_json(200, out)

    def eks_create_delete(self, path, body):
        if not STATE.moto_enabled:
            return self.send_json(409, {"error": "moto is not running (--no-moto)"})
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return self.send_json(400, {"error": "body must be JSON"})
        if not isinstance(req, dict):
            return self.send_json(400, {"error": "body must be a JSON object"})
        if path == "/_eks/delete":
            try:
                out = eks_delete(req)
            except BadRequest as e:
                return self.send_json(400, {"error": str(e)})
            if out is None:
                return self.send_json(404, {"error": f"no such cluster {req.get('name')!r}"})
            return self.send_json(200, out)
        if "clusters" in req:
            items = req["clusters"]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                return self.send_json(400, {"error": "clusters must be a list of objects"})
            common = {k: v for k, v in req.items() if k != "clusters"}
            items = [dict(common, **i) for i in items]
        else:
            items = [req]
        try:
            # validate everything before creating anything
            for i in items:
                _eks_target(i)
            out = [eks_create(i) for i in items]
        except BadRequest as e:
            return self.send_json(400, {"error": str(e)})
        except Exception as e:  # moto's own validation (role ARN, ...)
            return self.send_json(400, {"error": f"moto refused: {e!r}"})
        if "clusters" in req:
            return self.send_json(200, {"clusters": out})
        return self.send_json(200, out[0])

    # -- /token ----------------------------------------------------------
    def token(self, body):
        STATE.bump("token_requests")
        self.delay()
        status = STATE.take_fault("token")
        if status:
            err = OAUTH_ERRORS.get(status, "server_error" if status >= 500 else "invalid_request")
            return self.send_json(status, {"error": err, "error_description": "injected failure"})
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if (form.get("grant_type") or [""])[0] == "refresh_token":
            return self.refresh_grant(form)
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

    def refresh_grant(self, form):
        """A user login (authorized_user ADC): refresh tokens `1//fake-refresh-<email>`
        with a client id and secret; anything else is invalid_grant."""
        refresh = (form.get("refresh_token") or [""])[0]
        if not (refresh.startswith("1//fake-refresh-") and form.get("client_id")
                and form.get("client_secret")):
            return self.send_json(400, {"error": "invalid_grant",
                                        "error_description": "Token has been expired or revoked."})
        email = refresh[len("1//fake-refresh-"):]
        with STATE.lock:
            expires_in = STATE.expires_in
        scopes = ["https://www.googleapis.com/auth/cloud-platform",
                  "https://www.googleapis.com/auth/userinfo.email", "openid"]
        tok = STATE.issue("fake", email, scopes, time.time() + expires_in, "refresh-token")
        return self.send_json(200, {"access_token": tok, "expires_in": expires_in,
                                    "scope": " ".join(scopes), "token_type": "Bearer"})

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
        with STATE.lock:
            STATE.stats["generate_access_token_delegates"] = list(req.get("delegates") or [])
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
            if "api_delay_ms" in req:
                STATE.api_delay_ms = int(req["api_delay_ms"] or 0)
            if "aws_disabled_regions" in req:
                STATE.aws_disabled_regions = set(req["aws_disabled_regions"] or [])
            if "aws_revoked_keys" in req:
                STATE.aws_revoked_keys = set(req["aws_revoked_keys"] or [])
            if "aws_denied_roles" in req:
                STATE.aws_denied_roles = set(req["aws_denied_roles"] or [])
            if "aws_fail_regions" in req:
                STATE.aws_fail_regions = {str(k): int(v) for k, v in
                                          (req["aws_fail_regions"] or {}).items()}
            fails = req.get("fail")
            if isinstance(fails, dict):
                fails = [fails]
            for f in fails or []:
                route = f.get("route")
                if route not in FAULT_ROUTES:
                    return self.send_json(400, {"error": f"unknown route {route!r}"})
                STATE.faults[route] = [int(f.get("status", 503)), int(f.get("count", 1))]
            if req.get("revoke_tokens"):
                for rec in STATE.tokens.values():
                    rec["revoked"] = True
            out = {"expires_in": STATE.expires_in, "delay_ms": STATE.delay_ms,
                   "check_jwt_time": STATE.check_jwt_time,
                   "api_delay_ms": STATE.api_delay_ms,
                   "aws_disabled_regions": sorted(STATE.aws_disabled_regions),
                   "aws_revoked_keys": sorted(STATE.aws_revoked_keys),
                   "aws_fail_regions": dict(STATE.aws_fail_regions),
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
        with STATE.lock:
            behaviour = dict(STATE.kube_clusters.get(cluster) or {})
        if behaviour.get("delay_ms"):
            time.sleep(behaviour["delay_ms"] / 1000)
        if behaviour.get("status") == 401:
            STATE.bump("kube_unauthorized")
            return self.send_json(401, K8S_UNAUTHORIZED)
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
        self.behaviour = behaviour
        return self.route(path.rstrip("/") or "/")

    def kube_list(self, resource, kind, names, full=None):
        """A list as the API server pages it: `limit`, `continue`, and
        `remainingItemCount`; metadata only when the client asks for
        PartialObjectMetadataList (as kube-rs's list_metadata does)."""
        who = dict(self.behaviour)
        if resource in (who.get("forbid") or []):
            return self.send_json(403, k8s_status(
                403, "Forbidden", f'{resource} is forbidden: User "fleetctx-test" cannot list '
                                  f'resource "{resource}" in API group "" at the cluster scope'))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        limit = int((query.get("limit") or ["0"])[0] or 0)
        start = int((query.get("continue") or ["0"])[0] or 0)
        rest = names[start:]
        page = rest[:limit] if limit else rest
        meta = {"resourceVersion": "1"}
        if len(rest) > len(page):
            meta["continue"] = str(start + len(page))
            meta["remainingItemCount"] = len(rest) - len(page)

        def metadata(name):
            namespace, _, name = name.rpartition("/")
            m = {"name": name, "uid": hashlib.md5(name.encode()).hexdigest(),
                 "resourceVersion": "1", "creationTimestamp": CREATED}
            if namespace:
                m["namespace"] = namespace
            return m
        if "as=PartialObjectMetadataList" in self.headers.get("Accept", ""):
            return self.send_json(200, {
                "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                "items": [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": metadata(n)} for n in page]})
        return self.send_json(200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": meta,
                                    "items": [full(n) if full else
                                              {"kind": kind, "apiVersion": "v1",
                                               "metadata": metadata(n)} for n in page]})

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
        counts = self.behaviour
        if path == "/api/v1/nodes":
            return self.kube_list("nodes", "Node",
                                  [f"node-{i}" for i in range(counts.get("nodes", 3))])
        if path == "/api/v1/pods":
            return self.kube_list("pods", "Pod",
                                  [f"default/pod-{i}" for i in range(counts.get("pods", 5))])
        if path == "/api/v1/namespaces" and "as=Table" not in self.headers.get("Accept", ""):
            return self.kube_list("namespaces", "Namespace",
                                  list(counts.get("namespaces", NAMESPACES)), ns_object)
        if path == "/api/v1/namespaces":
            return self.send_json(200, ns_table(list(counts.get("namespaces", NAMESPACES))))
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


def parse_fleet_spec(s):
    m = re.fullmatch(r"(\d+):(\d+)", s)
    if not m:
        raise argparse.ArgumentTypeError("expected PROJECTS:CLUSTERS, e.g. 200:3")
    return int(m.group(1)), int(m.group(2))


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
    ap.add_argument("--gke-fleet", metavar="PROJECTS:CLUSTERS", type=parse_fleet_spec,
                    help="pre-populate the GKE fleet with projects bench-000... "
                         "each holding CLUSTERS clusters")
    ap.add_argument("--rm-page-size", type=int, default=None, metavar="N",
                    help=f"Resource Manager search page size (default {DEFAULT_RM_PAGE_SIZE})")
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
    # The same API server behind a certificate of another CA: what a cluster
    # whose certificate does not match the CA its kubeconfig holds looks like.
    other_dir = os.path.join(state_dir, "other-ca")
    os.makedirs(other_dir, exist_ok=True)
    _, other_cert, other_key = make_tls(other_dir)
    other_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other_ctx.load_cert_chain(other_cert, other_key)
    kube_other = TLSServer(("127.0.0.1", 0), KubeHandler, other_ctx)
    fleet = {"projects": bench_fleet(*args.gke_fleet) if args.gke_fleet else {}}
    if args.rm_page_size:
        fleet["rm_page_size"] = args.rm_page_size
    set_gke_fleet(fleet)

    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
               for s in (google, kube, kube_other)]
    for t in threads:
        t.start()

    info = {"google": google_url, "kube": STATE.kube_url,
            "kube_other_ca": f"https://127.0.0.1:{kube_other.server_address[1]}"}
    if moto_thread is not None:
        moto_thread.join()
        if "error" in moto_box:
            print(f"fakes: moto failed to start: {moto_box['error']!r}", file=sys.stderr)
            return 1
        STATE.moto_enabled = True
        STATE.moto_url = moto_box["url"]
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
