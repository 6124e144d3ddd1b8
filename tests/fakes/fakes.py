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
    optional latency, and per-region "not enabled" / failure injection;
  * Azure (HTTPS, the kube fake's certificate): an Entra ID fake (OIDC discovery,
    JWKS, the token endpoint for client secrets, certificate and federated
    assertions, refresh tokens and device codes, and App Service's managed-identity
    endpoint) and a Resource Manager fake (subscriptions, AKS managedClusters,
    listClusterUserCredential), controlled by /_azure/fleet and /_azure/entra; the
    kube fake takes Entra tokens under /aks/NAME.

Prints ONE JSON line on stdout when everything is ready, then serves until stdin
reaches EOF (or --no-stdin-watch), SIGTERM or SIGINT. Nothing else goes to stdout;
stderr stays quiet unless --verbose.

Other modes:
  fakes.py --self-test            check the EKS verifier against the golden vectors,
                                  the Entra token and client-assertion checks
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
AZURE_TENANT = "72f988bf-0000-4000-8000-00000000fa4e"  # the fake's one tenant (more via /_azure/entra)
AZURE_TENANT_DOMAIN = "fleetctxfake.onmicrosoft.com"
DEFAULT_AZURE_EXPIRES_IN = 3599
DEFAULT_ARM_PAGE_SIZE = 2

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
        azure_self_test(check)
    print("self-test " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


# ---------------------------------------------------------------------------
# JWTs (cryptography)
# ---------------------------------------------------------------------------


def sign_jwt(private_key, claims, pad=False, header=None):
    """An RS256 JWT (PS256 when the header says so). header: the JOSE header,
    default {"alg": "RS256", "typ": "JWT"}."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def enc(b):
        s = base64.urlsafe_b64encode(b).decode()
        return s if pad else s.rstrip("=")

    header = header or {"alg": "RS256", "typ": "JWT"}
    head = enc(json.dumps(header).encode())
    body = enc(json.dumps(claims).encode())
    signing_input = f"{head}.{body}".encode()
    if header.get("alg") == "PS256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        sig = private_key.sign(signing_input, pss, hashes.SHA256())
    else:
        sig = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{enc(sig)}"


def verify_jwt(jwt, public_keys, audience, now=None, check_time=True):
    """Verify a Google service-account JWT-bearer assertion. Raises ValueError."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    now = time.time() if now is None else now
    try:
        header, claims, signing_input, sig = jwt_split(jwt)
    except ValueError as e:
        raise ValueError(f"Invalid JWT: {e}")
    if header.get("alg") != "RS256":
        raise ValueError("Invalid JWT: alg must be RS256")
    iss = claims.get("iss")
    pub = public_keys.get(iss)
    if pub is None:
        raise ValueError(f"Invalid JWT: unknown issuer {iss!r}")
    try:
        pub.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
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
        # Azure (see the Azure section): keys and pre-registered apps survive /_reset.
        self.entra_url = self.arm_url = None
        self.entra_key = self.entra_public_key = self.entra_x5t = self.entra_cert_der = None
        self.wi_key, self.wi_issuers = None, {}  # the fake service-account issuer
        self.msi_header = self.federated_token_file = None
        self.azure_base_apps, self.azure_base_users, self.azure_base_refresh_tokens = {}, {}, {}
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
            self.arm_delay_ms = 0
            self.reset_azure()
            self.stats = {
                "token_requests": 0,
                "generate_access_token_requests": 0,
                "sts": {},
                "kube_requests": 0,
                "kube_unauthorized": 0,
                "kube_token_kinds": {"gke": 0, "eks": 0, "aks": 0},
                "kube_identities": {},
                "container": {},
                "rm_pages": 0,
                "google_api_identities": {},
                "eks": {},
                "eks_regions": {},
                "sso": {},
                "metadata_token_requests": 0,
                "entra_token_requests": 0,
                "entra_token_kinds": {},  # attempts: secret, cert, federated, refresh_token, ...
                "entra_tokens_issued": {},  # secret, cert, federated, msi, user
                "entra_discovery": {},  # openid-configuration, keys, instance, other
                "msi_token_requests": 0,
                "arm_requests": 0,
                "arm_unauthorized": 0,
                "arm_identities": {},
                "arm_subscription_pages": 0,
                "arm_cluster_pages": {},  # subscription id -> pages
                "arm_cluster_gets": 0,
                "arm_credential_requests": {},  # cluster name -> n
                "arm_credential_server_fqdn": {},  # "public" | "private" | "none" -> n
                "arm_credentials": {},  # "SID/RG/NAME" -> {"public"|"private"|"none": n}
            }

    def reset_azure(self):
        """Azure back to its start (the caller holds the lock): the pre-registered
        tenant, apps (unrevoked) and user; no fleet, no issued-token records."""
        self.azure_tenants = {AZURE_TENANT: {"id": AZURE_TENANT, "domain": AZURE_TENANT_DOMAIN,
                                             "name": "fleetctx fake tenant"}}
        self.azure_apps = {cid: dict(a, revoked=False) for cid, a in self.azure_base_apps.items()}
        self.azure_users = {upn: dict(u) for upn, u in self.azure_base_users.items()}
        self.azure_refresh_tokens = {t: dict(r) for t, r in self.azure_base_refresh_tokens.items()}
        self.azure_device_codes = {}
        self.azure_tokens = {}  # uti -> issued-token record
        self.azure_expires_in = DEFAULT_AZURE_EXPIRES_IN
        self.azure_fleet = {"page_size": DEFAULT_ARM_PAGE_SIZE,
                            "subscription_page_size": DEFAULT_ARM_PAGE_SIZE, "subscriptions": []}

    def azure_tenant(self, seg):
        """The tenant id an Entra path segment names (id or domain), the generic
        name (common, organizations, consumers), or None."""
        seg = seg.lower()
        if seg in GENERIC_TENANTS:
            return seg
        with self.lock:
            if seg in self.azure_tenants:
                return seg
            return next((t["id"] for t in self.azure_tenants.values()
                         if t["domain"].lower() == seg), None)

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
FAULT_ROUTES = ("token", "generateAccessToken", "kube", "container", "rm", "entra", "msi", "arm")
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
        if path == "/_azure/fleet":
            with STATE.lock:
                fleet = json.loads(json.dumps(STATE.azure_fleet))
            return self.send_json(200, fleet)
        if path == "/_azure/entra":
            return self.send_json(200, azure_entra_state())
        if path == "/_azure/tokens":
            with STATE.lock:
                toks = [dict(rec) for rec in STATE.azure_tokens.values()]
            return self.send_json(200, {"tokens": toks})
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
        if path in ("/_azure/fleet", "/_azure/entra"):
            try:
                req = json.loads(body or b"{}")
            except ValueError as e:
                return self.send_json(400, {"error": f"bad JSON: {e}"})
            try:
                out = set_azure_fleet(req) if path == "/_azure/fleet" else azure_entra_control(req)
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
            if "arm_delay_ms" in req:
                STATE.arm_delay_ms = int(req["arm_delay_ms"] or 0)
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
                for rec in STATE.azure_tokens.values():
                    rec["revoked"] = True
            out = {"expires_in": STATE.expires_in, "delay_ms": STATE.delay_ms,
                   "check_jwt_time": STATE.check_jwt_time,
                   "api_delay_ms": STATE.api_delay_ms,
                   "arm_delay_ms": STATE.arm_delay_ms,
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
PREFIX_RE = re.compile(r"^/(gke|eks|aks)/([^/]+)(/.*)?$")


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
        if prefix_kind == "aks":
            return self.authenticate_aks(tok, cluster)
        if prefix_kind == "eks" or (tok.startswith("eyJ") and tok.count(".") == 2):
            # an Entra JWT outside /aks/
            return None
        rec = STATE.google_token(tok)
        if rec is None:
            vlog("kube: unknown, revoked or expired Google token")
            return None
        if CLOUD_PLATFORM not in rec["scopes"]:
            vlog("kube: Google token lacks the cloud-platform scope")
            return None
        return "gke", rec["email"]

    @staticmethod
    def authenticate_aks(tok, cluster):
        """An Entra access token for the AKS server application, as AKS's
        authentication webhook checks it; its tid must be the cluster's tenant when
        the fleet holds a cluster of that name."""
        try:
            claims = verify_entra_jwt(tok, STATE.entra_public_key, aks_cluster_audiences(cluster),
                                      revoked=azure_token_revoked)
        except AzureReject as e:
            vlog(f"kube: AKS token rejected: {e.code}")
            return None
        tenants = aks_cluster_tenants(cluster)
        if tenants and str(claims.get("tid", "")).lower() not in tenants:
            vlog(f"kube: AKS token of tenant {claims.get('tid')} for a cluster of {sorted(tenants)}")
            return None
        return "aks", claims.get("upn") or claims.get("appid") or claims.get("oid")

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
# Azure: Entra ID, managed identity (App Service), ARM and AKS credentials
# ---------------------------------------------------------------------------
#
# Two HTTPS servers share the kube fake's certificate: `entra` (the authority
# host: OIDC discovery, JWKS, the v2.0/v1 token endpoints, device code, and the
# App Service managed-identity endpoint /msi/token) and `arm` (Resource Manager:
# subscriptions, AKS managedClusters, listClusterUserCredential). Access tokens
# are RS256 JWTs signed by the fake Entra key, shaped like Entra's v1 tokens, so
# ARM and the kube fake (/aks/NAME) verify them statelessly, then consult the
# issued-token records only for revocation.

AZURE_SECRET_APP = "3f2b9c1e-7a4d-4e8b-9c61-0a5d2e7f1b01"
AZURE_CERT_APP = "3f2b9c1e-7a4d-4e8b-9c61-0a5d2e7f1b02"
AZURE_WI_APP = "3f2b9c1e-7a4d-4e8b-9c61-0a5d2e7f1b03"
AZURE_MSI_APP = "3f2b9c1e-7a4d-4e8b-9c61-0a5d2e7f1b04"
AZURE_MSI_RESOURCE_ID = ("/subscriptions/5c1f0e2a-0000-4000-8000-00000000a0a0/resourcegroups/"
                         "fleetctx-identity/providers/Microsoft.ManagedIdentity/"
                         "userAssignedIdentities/fleetctx-msi")
AZURE_USER_UPN = "fleetctx-user@" + AZURE_TENANT_DOMAIN
AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
AKS_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"  # the AKS AAD server application
KUBELOGIN_CLIENT_ID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"
ENTRA_KID = "fleetctx-fake-entra"
WI_ISSUER = "https://oidc.fake.aks/issuer"
WI_SUBJECT = "system:serviceaccount:default:fleetctx"
WI_AUDIENCE = "api://AzureADTokenExchange"
WI_KID = "fleetctx-fake-sa-issuer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GENERIC_TENANTS = ("common", "organizations", "consumers")
RESERVED_SCOPES = frozenset(["openid", "profile", "offline_access", "email"])
# What ARM accepts as `aud` (its InvalidAuthenticationTokenAudience message lists these).
ARM_AUDIENCES = ("https://management.core.windows.net/", "https://management.core.windows.net",
                 "https://management.azure.com/", "https://management.azure.com")
# Resources the fake tenant knows: scope resource (no trailing slash) -> the `aud` Entra puts in.
AZURE_RESOURCES = {
    "https://management.azure.com": "https://management.azure.com/",
    "https://management.core.windows.net": "https://management.core.windows.net/",
    AKS_SERVER_ID: AKS_SERVER_ID,
    "https://graph.microsoft.com": "https://graph.microsoft.com",
    "00000003-0000-0000-c000-000000000000": "00000003-0000-0000-c000-000000000000",
    "https://vault.azure.net": "https://vault.azure.net",
    "https://storage.azure.com": "https://storage.azure.com",
}
ENTRA_BACKDATE = 300  # Entra sets iat/nbf 5 min in the past
ASSERTION_MAX_LIFETIME = 600  # a client assertion's exp at most 10 min ahead...
ASSERTION_LEEWAY = 60  # ...give or take a minute of clock skew
AKS_DEFAULT_LOCATION = "westeurope"
AKS_DEFAULT_VERSION = "1.33.2"
AKS_PROVISIONING_STATES = ("Succeeded", "Creating", "Updating", "Upgrading", "Scaling", "Deleting",
                           "Failed", "Canceled", "Starting", "Stopping")
AKS_POWER_STATES = ("Running", "Stopped")
SUBSCRIPTION_STATES = ("Enabled", "Disabled", "Warned", "PastDue", "Deleted")
GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
AKS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
RG_NAME_RE = re.compile(r"^[-\w._()]{1,90}$")


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def new_guid():
    h = secrets.token_hex(16)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def guid_from(seed):
    """A stable GUID (object ids, principal ids) derived from a string."""
    h = hashlib.sha256(seed.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def jwt_split(tok):
    """(header, claims, signing input, signature) of a compact JWS; ValueError if malformed."""
    parts = tok.split(".")
    if len(parts) != 3:
        raise ValueError("not three segments")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except Exception:
        raise ValueError("undecodable segment")
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("header or claims not an object")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), sig


def rsa_verify(public_key, sig, data, alg):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    if alg == "RS256":
        pad = padding.PKCS1v15()
    elif alg == "PS256":
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    else:
        return False
    try:
        public_key.verify(sig, data, pad, hashes.SHA256())
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def thumbprint_bytes(value):
    """An x5t / x5t#S256 header value as bytes: base64url (RFC 7515) or standard base64
    (azure_identity for Rust sends that), padded or not, or hex."""
    if not isinstance(value, str) or not value:
        return None
    if re.fullmatch(r"[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}", value):
        return bytes.fromhex(value)
    try:
        return b64url_decode(value.replace("+", "-").replace("/", "_"))
    except Exception:
        return None


def entra_time(ts):
    """Entra's timestamps in error descriptions: 2024-10-02T22:05:03.6755165Z."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-6] + f"{int((ts % 1) * 1e7):07d}Z"


def arm_time(ts):
    """ARM's UTC times in messages: 11/24/2026 10:00:00 AM."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime(
        "%m/%d/%Y %I:%M:%S %p")


# -- Key material ---------------------------------------------------------------


def _rsa_key_and_cert(path, common_name):
    """An RSA-2048 key and a self-signed certificate in one PEM file (PKCS#8 key
    first, then the certificate, as `az ad sp create-for-rbac --create-cert`
    writes); reused when the file exists."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                data = f.read()
            # Our own file: skip the (slow, ~40 ms) RSA consistency checks.
            key = serialization.load_pem_private_key(data, None,
                                                     unsafe_skip_rsa_key_validation=True)
            cert = x509.load_pem_x509_certificate(
                data[data.index(b"-----BEGIN CERTIFICATE-----"):])
            return key, cert
        except Exception:
            pass
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    _write(path, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
           + cert.public_bytes(pem), 0o600)
    return key, cert


def cert_thumbprints(cert):
    from cryptography.hazmat.primitives import serialization

    der = cert.public_bytes(serialization.Encoding.DER)
    return {"der": der, "sha1": hashlib.sha1(der).digest(), "sha256": hashlib.sha256(der).digest(),
            "public_key": cert.public_key()}


def write_federated_token(path, issuer=WI_ISSUER, subject=WI_SUBJECT, audience=WI_AUDIENCE,
                          expires_in=86400, key=None):
    """A projected service-account token as AKS's workload-identity webhook mounts
    it at AZURE_FEDERATED_TOKEN_FILE, signed by the fake issuer key."""
    now = int(time.time())
    ns, _, sa = subject.rpartition(":")
    ns = ns.rpartition(":")[2]
    claims = {"aud": [audience], "exp": now + int(expires_in), "iat": now, "iss": issuer,
              "jti": new_guid(), "nbf": now, "sub": subject,
              "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa, "uid": guid_from(subject)}}}
    tok = sign_jwt(key or STATE.wi_key, claims, header={"alg": "RS256", "kid": WI_KID})
    _write(path, tok, 0o600)
    return tok


def make_azure(state_dir):
    """Keys, files and the pre-registered apps. Returns the JSON-line fields."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    from concurrent.futures import ThreadPoolExecutor

    cert_file = os.path.join(state_dir, "azure-sp.pem")
    wanted = [(os.path.join(state_dir, "entra-signing.pem"), "fleetctx fake Entra token signing"),
              (os.path.join(state_dir, "azure-wi-issuer.pem"), "fleetctx fake service account issuer"),
              (cert_file, "fleetctx-sp")]
    # RSA key generation releases the GIL: the three side by side take the time of two.
    with ThreadPoolExecutor(3) as pool:
        (ekey, ecert), (wkey, _), (ckey, ccert) = pool.map(lambda a: _rsa_key_and_cert(*a), wanted)
    etp = cert_thumbprints(ecert)
    STATE.entra_key, STATE.entra_public_key = ekey, ekey.public_key()
    STATE.entra_x5t, STATE.entra_cert_der = b64url(etp["sha1"]), etp["der"]
    STATE.wi_key = wkey
    STATE.wi_issuers = {WI_ISSUER: wkey.public_key()}
    pfx_file = os.path.join(state_dir, "azure-sp.pfx")  # what azure_identity's certificate credential reads
    _write(pfx_file, pkcs12.serialize_key_and_certificates(
        b"fleetctx-sp", ckey, ccert, None, serialization.NoEncryption()), 0o600)
    secrets_file = os.path.join(state_dir, "azure-secrets.json")
    try:
        with open(secrets_file) as f:
            kept = json.load(f)
        assert kept["client_secret"] and kept["msi_header"] and kept["refresh_token"]
    except Exception:
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        kept = {"client_secret": "".join(secrets.choice(alphabet) for _ in range(3)) + "8Q~"
                + "".join(secrets.choice(alphabet + "._-~") for _ in range(34)),
                "msi_header": new_guid(),
                "refresh_token": "1.AXkA" + b64url(secrets.token_bytes(48))}
        _write(secrets_file, json.dumps(kept, indent=2) + "\n", 0o600)
    fed_file = os.path.join(state_dir, "azure-federated-token")
    write_federated_token(fed_file, key=wkey)
    STATE.federated_token_file = fed_file
    STATE.msi_header = kept["msi_header"]
    apps = [
        azure_app(AZURE_SECRET_APP, name="fleetctx-secret-sp", secrets_=[kept["client_secret"]]),
        azure_app(AZURE_CERT_APP, name="fleetctx-cert-sp", certs=[cert_thumbprints(ccert)]),
        azure_app(AZURE_WI_APP, name="fleetctx-workload-identity",
                  federated=[{"issuer": WI_ISSUER, "subject": WI_SUBJECT, "audience": WI_AUDIENCE}]),
        azure_app(AZURE_MSI_APP, name="fleetctx-msi", kind="msi"),
    ]
    with STATE.lock:
        STATE.azure_base_apps = {a["client_id"]: a for a in apps}
        STATE.azure_base_users = {AZURE_USER_UPN: azure_user(AZURE_USER_UPN)}
        STATE.azure_base_refresh_tokens = {kept["refresh_token"]: {"upn": AZURE_USER_UPN,
                                                                   "client_id": None}}
        STATE.reset_azure()
    return {
        "azure_tenant": AZURE_TENANT,
        "azure_client_id": AZURE_SECRET_APP,
        "azure_client_secret": kept["client_secret"],
        "azure_cert_client_id": AZURE_CERT_APP,
        "azure_cert_file": cert_file,
        "azure_cert_pfx": pfx_file,
        "azure_wi_client_id": AZURE_WI_APP,
        "azure_federated_token_file": fed_file,
        "azure_msi_header": kept["msi_header"],
        "azure_msi_client_id": AZURE_MSI_APP,
        "azure_user": AZURE_USER_UPN,
        "azure_user_refresh_token": kept["refresh_token"],
    }


def azure_app(client_id, tenant=AZURE_TENANT, name=None, secrets_=(), certs=(), federated=(),
              kind=None):
    kind = kind or ("federated" if federated else "cert" if certs else "secret")
    return {"client_id": client_id.lower(), "tenant": tenant.lower(), "name": name or client_id,
            "oid": guid_from(f"sp/{tenant}/{client_id}"), "kind": kind,
            "secrets": list(secrets_), "certs": list(certs), "federated": list(federated),
            "revoked": False}


def azure_user(upn, tenant=AZURE_TENANT):
    return {"upn": upn, "tenant": tenant.lower(), "oid": guid_from(f"user/{upn}"),
            "name": upn.split("@")[0]}


def render_azure_app(a):
    return {"client_id": a["client_id"], "tenant": a["tenant"], "name": a["name"], "oid": a["oid"],
            "kind": a["kind"], "secrets": list(a["secrets"]),
            "certificates": [{"x5t": b64url(c["sha1"]), "x5t#S256": b64url(c["sha256"])}
                             for c in a["certs"]],
            "federated": list(a["federated"]), "revoked": a["revoked"]}


# -- Entra tokens -----------------------------------------------------------------


def mint_entra_token(tenant, aud, kind, lifetime, app=None, user=None, client_id=None):
    """An access token as Entra issues it (v1 claims), remembered for revocation
    checks and /_azure/tokens. Returns (token, exp, nbf)."""
    now = int(time.time())
    iss = f"https://sts.windows.net/{tenant}/"
    uti = b64url(secrets.token_bytes(16))[:22]
    claims = {"aud": aud, "iss": iss, "iat": now - ENTRA_BACKDATE, "nbf": now - ENTRA_BACKDATE,
              "exp": now + lifetime}
    if user is None:
        claims.update({
            "aio": b64url(secrets.token_bytes(48)),
            "appid": app["client_id"],
            "appidacr": "1" if kind == "secret" else "2",
            "idp": iss, "idtyp": "app", "oid": app["oid"],
            "rh": f"1.A{b64url(secrets.token_bytes(24))}AA.", "sub": app["oid"], "tid": tenant,
            "uti": uti, "ver": "1.0", "xms_idrel": "7 14"})
        if kind == "msi":
            claims["xms_mirid"] = AZURE_MSI_RESOURCE_ID
        who, oid, cid = app["client_id"], app["oid"], app["client_id"]
    else:
        claims.update({
            "acr": "1", "aio": b64url(secrets.token_bytes(48)), "amr": ["pwd"], "appid": client_id,
            "appidacr": "0", "family_name": "User", "given_name": user["name"], "idtyp": "user",
            "ipaddr": "127.0.0.1", "name": user["name"], "oid": user["oid"],
            "puid": "10032000" + hashlib.sha256(user["upn"].encode()).hexdigest()[:8].upper(),
            "rh": f"1.A{b64url(secrets.token_bytes(24))}AA.", "scp": "user_impersonation",
            "sid": guid_from(f"sid/{user['upn']}"),
            "sub": b64url(hashlib.sha256(f"{user['oid']}/{aud}".encode()).digest())[:43],
            "tid": tenant, "unique_name": user["upn"], "upn": user["upn"], "uti": uti,
            "ver": "1.0"})
        who, oid, cid = user["upn"], user["oid"], client_id
    header = {"typ": "JWT", "alg": "RS256", "x5t": STATE.entra_x5t, "kid": ENTRA_KID}
    tok = sign_jwt(STATE.entra_key, claims, header=header)
    with STATE.lock:
        STATE.azure_tokens[uti] = {"uti": uti, "kind": kind, "tenant": tenant, "client_id": cid,
                                   "oid": oid, "who": who, "aud": aud,
                                   "expires_at": claims["exp"], "issued_at": now, "revoked": False}
        STATE.stats["entra_tokens_issued"][kind] = STATE.stats["entra_tokens_issued"].get(kind, 0) + 1
    vlog(f"entra: issued a {kind} token for {who} (aud {aud})")
    return tok, claims["exp"], claims["nbf"]


class AzureReject(Exception):
    """code: ARM's error code (InvalidAuthenticationToken, ExpiredAuthenticationToken,
    InvalidAuthenticationTokenAudience); message: ARM's message."""

    def __init__(self, code, message, claims=None):
        super().__init__(message)
        self.code, self.message, self.claims = code, message, claims


def verify_entra_jwt(tok, public_key, audiences, now=None, revoked=None):
    """Check an access token as a resource does: RS256 by the Entra key (kid), the
    v1 issuer of its tid, nbf <= now < exp, aud one of `audiences`, not revoked
    (revoked(uti) -> bool). Returns the claims; raises AzureReject."""
    now = time.time() if now is None else now
    invalid = AzureReject("InvalidAuthenticationToken", "The access token is invalid.")
    try:
        header, claims, signing_input, sig = jwt_split(tok)
    except ValueError:
        raise invalid
    if header.get("alg") != "RS256" or header.get("kid") != ENTRA_KID:
        raise invalid
    if not rsa_verify(public_key, sig, signing_input, "RS256"):
        raise invalid
    tid = claims.get("tid")
    if not isinstance(tid, str) or claims.get("iss") != f"https://sts.windows.net/{tid}/":
        raise invalid
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, (int, float)) or not isinstance(nbf, (int, float)):
        raise invalid
    if exp <= now:
        raise AzureReject("ExpiredAuthenticationToken",
                          f"The access token expiry UTC time '{arm_time(exp)}' is earlier than "
                          f"current UTC time '{arm_time(now)}'.", claims)
    if nbf > now:
        raise invalid
    if claims.get("aud") not in audiences:
        raise AzureReject("InvalidAuthenticationTokenAudience",
                          f"The access token has been obtained for wrong audience or resource "
                          f"'{claims.get('aud')}'. It should exactly match with one of the allowed "
                          "audiences " + ",".join(f"'{a}'" for a in audiences) + ".", claims)
    if revoked is not None and revoked(claims.get("uti")):
        raise invalid
    return claims


def azure_token_revoked(uti):
    with STATE.lock:
        rec = STATE.azure_tokens.get(uti)
        return bool(rec and rec["revoked"])


def resource_of_scope(scope, client_credentials):
    """(resource as asked, aud) of a v2 scope string, or (AADSTS code, fmt) on error."""
    scopes = [s for s in scope.split() if s not in RESERVED_SCOPES]
    if len(scopes) != 1:
        return None, (70011, {"scope": scope})
    s = scopes[0]
    if s.endswith("/.default"):
        resource = s[:-len("/.default")]
    elif client_credentials:
        return None, (1002012, {"scope": s})
    else:
        resource = s.rsplit("/", 1)[0] if "/" in s else s
    return resource, None


def aud_of_resource(resource):
    return AZURE_RESOURCES.get(resource.rstrip("/").lower()
                               if resource.lower().startswith("https://") else resource.lower())


class EntraReject(Exception):
    """An AADSTS code (a key of ENTRA_ERRORS) and its message's fields."""

    def __init__(self, code, **fmt):
        super().__init__(f"AADSTS{code}")
        self.code, self.fmt = code, fmt


def check_client_assertion(app, assertion, endpoints, issuers=None, now=None):
    """Check a client_assertion for app as Entra does. A certificate credential:
    RS256 or PS256 by one of the app's certificates (header x5t or x5t#S256),
    iss = sub = client_id, aud one of `endpoints` (the token endpoint), valid now
    and exp at most 10 min ahead. A federated credential (an app with federated
    identity credentials, assertion not issued by itself): signed by a key of its
    issuer (`issuers`: iss -> public key), issuer, subject and audience matching one
    credential, unexpired. Returns "cert" or "federated"; raises EntraReject."""
    now = time.time() if now is None else now
    issuers = STATE.wi_issuers if issuers is None else issuers
    try:
        header, claims, signing_input, sig = jwt_split(assertion)
    except ValueError:
        raise EntraReject(50027)
    alg = header.get("alg")
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", 0))
    if not isinstance(exp, (int, float)) or not isinstance(nbf, (int, float)):
        raise EntraReject(50027)

    def in_time(max_ahead):
        if exp <= now or nbf > now + ASSERTION_LEEWAY or (
                max_ahead is not None and exp > now + max_ahead):
            raise EntraReject(700024, nbf=entra_time(nbf), exp=entra_time(exp))

    iss = claims.get("iss")
    if app["kind"] == "federated" and str(iss).lower() != app["client_id"]:
        fics = [f for f in app["federated"] if f["issuer"] == iss]
        if not fics:
            raise EntraReject(700211, issuer=iss)
        pub = issuers.get(iss)
        if pub is None or alg not in ("RS256", "PS256") or not rsa_verify(
                pub, sig, signing_input, alg):
            raise EntraReject(700027, reason="The key was not found.",
                              thumbprint=header.get("kid", ""), client_id=app["client_id"])
        fics = [f for f in fics if f["subject"] == claims.get("sub")]
        if not fics:
            raise EntraReject(700213, subject=claims.get("sub"))
        auds = claims.get("aud")
        auds = auds if isinstance(auds, list) else [auds]
        if not any(f["audience"] in auds for f in fics):
            raise EntraReject(700212, audience=",".join(str(a) for a in auds))
        in_time(None)
        return "federated"
    if alg not in ("RS256", "PS256"):
        raise EntraReject(50027)
    if str(iss).lower() != app["client_id"] or str(claims.get("sub")).lower() != app["client_id"]:
        raise EntraReject(700021)
    if claims.get("aud") not in endpoints:
        raise EntraReject(700023)
    in_time(ASSERTION_MAX_LIFETIME + ASSERTION_LEEWAY)
    s256, s1 = thumbprint_bytes(header.get("x5t#S256")), thumbprint_bytes(header.get("x5t"))
    cert = next((c for c in app["certs"] if (s256 and c["sha256"] == s256)
                 or (s1 and c["sha1"] == s1)), None)
    shown = (s256 or s1 or b"").hex().upper()
    if cert is None:
        raise EntraReject(700027, reason="The key was not found.", thumbprint=shown,
                          client_id=app["client_id"])
    if not rsa_verify(cert["public_key"], sig, signing_input, alg):
        raise EntraReject(700027, reason="Key was found, but use of the key to verify the "
                                         "signature failed.", thumbprint=shown,
                          client_id=app["client_id"])
    return "cert"


ENTRA_ERRORS = {
    50027: (400, "invalid_request", "JWT token is invalid or malformed."),
    50049: (400, "invalid_instance", "Unknown or invalid instance."),
    70003: (400, "unsupported_grant_type", "The app requested an unsupported grant type '{grant}'."),
    70011: (400, "invalid_scope", "The provided request must include a 'scope' input parameter. The "
                                  "provided value for the input parameter 'scope' is not valid. "
                                  "The scope {scope} is not valid."),
    70020: (400, "expired_token", "The provided value for the input parameter 'device_code' is not "
                                  "valid. This device code has expired."),
    1002012: (400, "invalid_scope", "The provided value for scope {scope} is not valid. Client "
                                    "credential flows must have a scope value with /.default "
                                    "suffixed to the resource identifier (application ID URI)."),
    90002: (400, "invalid_request", "Tenant '{tenant}' not found. Check to make sure you have the "
                                    "correct tenant ID and are signing into the correct cloud. Check "
                                    "with your subscription administrator, this may happen if there "
                                    "are no active subscriptions for the tenant."),
    90033: (503, "temporarily_unavailable", "A transient error has occurred. Please try again."),
    500011: (400, "invalid_resource", "The resource principal named {resource} was not found in the "
                                      "tenant named {tenant_name}. This can happen if the application "
                                      "has not been installed by the administrator of the tenant or "
                                      "consented to by any user in the tenant. You might have sent "
                                      "your authentication request to the wrong tenant."),
    700016: (400, "unauthorized_client", "Application with identifier '{client_id}' was not found in "
                                         "the directory '{tenant_name}'. This can happen if the "
                                         "application has not been installed by the administrator of "
                                         "the tenant or consented to by any user in the tenant. You "
                                         "may have sent your authentication request to the wrong "
                                         "tenant."),
    700021: (401, "invalid_client", "Client assertion application identifier doesn't match "
                                    "'client_id' parameter. Review the documentation at "
                                    "https://learn.microsoft.com/entra/identity-platform/"
                                    "certificate-credentials ."),
    700023: (401, "invalid_client", "Client assertion audience claim does not match Realm issuer. "
                                    "Review the documentation at https://learn.microsoft.com/entra/"
                                    "identity-platform/certificate-credentials ."),
    700024: (401, "invalid_client", "Client assertion is not within its valid time range. Current "
                                    "time: {now}, assertion valid from {nbf}, expiry time of "
                                    "assertion {exp}. Review the documentation at "
                                    "https://learn.microsoft.com/entra/identity-platform/"
                                    "certificate-credentials ."),
    700027: (401, "invalid_client", "Client assertion contains an invalid signature. [Reason - "
                                    "{reason}, Thumbprint of key used by client: '{thumbprint}', "
                                    "Please visit the Azure Portal, Graph Explorer or directly use "
                                    "MS Graph to see configured keys for app Id '{client_id}'.]"),
    700082: (400, "invalid_grant", "The refresh token has expired due to inactivity. The token was "
                                   "issued on {issued} and was inactive for 90.00:00:00."),
    700211: (401, "invalid_client", "No matching federated identity record found for presented "
                                    "assertion issuer '{issuer}'. Please check your federated "
                                    "identity credential Subject, Audience and Issuer against the "
                                    "presented assertion. https://learn.microsoft.com/entra/"
                                    "workload-id/workload-identity-federation"),
    700212: (401, "invalid_client", "No matching federated identity record found for presented "
                                    "assertion audience '{audience}'. Please check your federated "
                                    "identity credential Subject, Audience and Issuer against the "
                                    "presented assertion. https://learn.microsoft.com/entra/"
                                    "workload-id/workload-identity-federation"),
    700213: (401, "invalid_client", "No matching federated identity record found for presented "
                                    "assertion subject '{subject}'. Check your federated identity "
                                    "credential Subject, Audience and Issuer against the presented "
                                    "assertion. https://learn.microsoft.com/entra/workload-id/"
                                    "workload-identity-federation"),
    900144: (400, "invalid_request", "The request body must contain the following parameter: "
                                     "'{param}'."),
    7000112: (400, "unauthorized_client", "Application '{client_id}'({name}) is disabled."),
    7000215: (401, "invalid_client", "Invalid client secret provided. Ensure the secret being sent in "
                                     "the request is the client secret value, not the client secret "
                                     "ID, for a secret added to app '{client_id}'."),
    7000218: (401, "invalid_client", "The request body must contain the following parameter: "
                                     "'client_assertion' or 'client_secret'."),
    7000222: (401, "invalid_client", "The provided client secret keys for app '{client_id}' are "
                                     "expired. Visit the Azure portal to create new keys for your "
                                     "app: https://aka.ms/NewClientSecret, or consider using "
                                     "certificate credentials for added security: "
                                     "https://aka.ms/certCreds."),
}


def entra_error(code, status=None, error=None, **fmt):
    """(status, body) of an Entra error answer: the AADSTS code, a description with
    Trace ID, Correlation ID and Timestamp after \\r\\n, as the token endpoint sends it."""
    st, err, msg = ENTRA_ERRORS[code]
    now = time.time()
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, corr = new_guid(), new_guid()
    fmt.setdefault("now", entra_time(now))
    desc = (f"AADSTS{code}: {msg.format(**fmt)}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}"
            f"\r\nTimestamp: {stamp}")
    return status or st, {"error": error or err, "error_description": desc, "error_codes": [code],
                          "timestamp": stamp, "trace_id": trace, "correlation_id": corr,
                          "error_uri": f"{STATE.entra_url}/error?code={code}"}


# -- The AKS fleet (ARM state) ------------------------------------------------------

AZ_SUB_KEYS = {"id", "tenant", "name", "state", "error", "error_count", "retry_after", "registered",
               "access", "clusters"}
AKS_CLUSTER_KEYS = {"name", "resource_group", "location", "private", "public_fqdn", "aad",
                    "azure_rbac", "disable_local_accounts", "provisioning_state", "power",
                    "credential_error", "credential_error_count", "tags", "version", "dns_prefix",
                    "server_app"}
ARM_ERROR_CODES = {400: "BadRequest", 401: "AuthenticationFailed", 403: "AuthorizationFailed",
                   404: "NotFound", 409: "Conflict", 429: "TooManyRequests",
                   500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable",
                   504: "GatewayTimeout"}


def _injected_status(err, allowed=()):
    if isinstance(err, str) and err.isdigit():
        err = int(err)
    if err is None or err in allowed or (isinstance(err, int) and 400 <= err <= 599):
        return err
    raise BadRequest(f"error must be null, {', '.join(allowed) + ' or ' if allowed else ''}"
                     "an HTTP status 400..599")


def normalize_aks_cluster(c):
    if not isinstance(c, dict):
        raise BadRequest("a cluster must be an object")
    unknown = set(c) - AKS_CLUSTER_KEYS
    if unknown:
        raise BadRequest(f"unknown cluster keys {sorted(unknown)}")
    name, rg = c.get("name"), c.get("resource_group")
    if not isinstance(name, str) or not AKS_NAME_RE.match(name):
        raise BadRequest(f"cluster name {name!r}: 1-63 letters, digits, _ and -")
    if not isinstance(rg, str) or not RG_NAME_RE.match(rg) or rg.endswith("."):
        raise BadRequest(f"cluster {name!r}: resource_group {rg!r} is not a resource group name")
    aad = bool(c.get("aad", True))
    disable_local = bool(c.get("disable_local_accounts", False))
    if disable_local and not aad:
        raise BadRequest(f"cluster {name!r}: disable_local_accounts needs aad (AKS refuses a "
                         "cluster with neither)")
    state = c.get("provisioning_state") or "Succeeded"
    if state not in AKS_PROVISIONING_STATES:
        raise BadRequest(f"provisioning_state must be one of {list(AKS_PROVISIONING_STATES)}")
    power = c.get("power") or "Running"
    if power not in AKS_POWER_STATES:
        raise BadRequest(f"power must be one of {list(AKS_POWER_STATES)}")
    tags = c.get("tags") or {}
    if not isinstance(tags, dict):
        raise BadRequest("tags must be an object")
    # Legacy Entra integration: the cluster's own server application, a resource
    # of its tenant that Entra issues tokens for.
    server_app = c.get("server_app")
    if server_app is not None:
        if not aad or not GUID_RE.match(str(server_app)):
            raise BadRequest(f"cluster {name!r}: server_app must be a GUID, on an aad cluster")
        server_app = str(server_app).lower()
        AZURE_RESOURCES[server_app] = server_app
    return {
        "server_app": server_app,
        "name": name, "resource_group": rg,
        "location": str(c.get("location") or AKS_DEFAULT_LOCATION).lower(),
        "private": bool(c.get("private", False)),
        "public_fqdn": bool(c.get("public_fqdn", False)),
        "aad": aad, "azure_rbac": bool(c.get("azure_rbac", True)),
        "disable_local_accounts": disable_local,
        "provisioning_state": state, "power": power,
        "credential_error": _injected_status(c.get("credential_error")),
        "credential_error_count": (None if c.get("credential_error_count") is None
                                   else int(c["credential_error_count"])),
        "tags": {str(k): str(v) for k, v in tags.items()},
        "version": str(c.get("version") or AKS_DEFAULT_VERSION),
        "dns_prefix": str(c.get("dns_prefix") or f"{name}-dns"),
    }


def normalize_azure_subscription(s):
    if not isinstance(s, dict):
        raise BadRequest("a subscription must be an object")
    unknown = set(s) - AZ_SUB_KEYS
    if unknown:
        raise BadRequest(f"unknown subscription keys {sorted(unknown)}")
    sid = s.get("id")
    if not isinstance(sid, str) or not GUID_RE.match(sid):
        raise BadRequest(f"subscription id {sid!r} is not a GUID")
    tenant = str(s.get("tenant") or AZURE_TENANT)
    if not GUID_RE.match(tenant):
        raise BadRequest(f"tenant {tenant!r} is not a GUID")
    state = s.get("state") or "Enabled"
    if state not in SUBSCRIPTION_STATES:
        raise BadRequest(f"state must be one of {list(SUBSCRIPTION_STATES)}")
    access = s.get("access")
    if access is not None and (not isinstance(access, list)
                               or not all(isinstance(a, str) for a in access)):
        raise BadRequest("access must be null or a list of client ids, object ids or UPNs")
    clusters = s.get("clusters") or []
    if not isinstance(clusters, list):
        raise BadRequest("clusters must be a list")
    norm = [normalize_aks_cluster(c) for c in clusters]
    seen = set()
    for c in norm:
        key = (c["resource_group"].lower(), c["name"].lower())
        if key in seen:
            raise BadRequest(f"cluster {c['resource_group']}/{c['name']} twice in {sid}")
        seen.add(key)
    return {
        "id": sid.lower(), "tenant": tenant.lower(),
        "name": str(s.get("name") or f"fleetctx-{sid[:8].lower()}"),
        "state": state,
        "error": _injected_status(s.get("error"), ("AuthorizationFailed", "SubscriptionNotFound")),
        "error_count": None if s.get("error_count") is None else int(s["error_count"]),
        "retry_after": int(s.get("retry_after") or 1),
        "registered": bool(s.get("registered", True)),
        "access": None if access is None else [a.lower() for a in access],
        "clusters": norm,
    }


def set_azure_fleet(req):
    """POST /_azure/fleet: replace the fleet (with "merge": true, upsert subscriptions
    by id and/or change the page sizes)."""
    if not isinstance(req, dict):
        raise BadRequest("body must be a JSON object")
    unknown = set(req) - {"page_size", "subscription_page_size", "subscriptions", "merge"}
    if unknown:
        raise BadRequest(f"unknown keys {sorted(unknown)}")
    subs = req.get("subscriptions") or []
    if not isinstance(subs, list):
        raise BadRequest("subscriptions must be a list")
    norm = [normalize_azure_subscription(s) for s in subs]
    if len({s["id"] for s in norm}) != len(norm):
        raise BadRequest("a subscription id appears twice")
    with STATE.lock:
        fleet = STATE.azure_fleet
        if req.get("merge"):
            by_id = {s["id"]: s for s in norm}
            fleet["subscriptions"] = [by_id.pop(s["id"], s) for s in fleet["subscriptions"]]
            fleet["subscriptions"] += [s for s in norm if s["id"] in by_id]
        else:
            fleet["subscriptions"] = norm
            fleet["page_size"] = fleet["subscription_page_size"] = DEFAULT_ARM_PAGE_SIZE
        for k in ("page_size", "subscription_page_size"):
            if req.get(k) is not None:
                fleet[k] = max(1, int(req[k]))
        return json.loads(json.dumps(fleet))


def render_subscription(s):
    return {"id": f"/subscriptions/{s['id']}", "authorizationSource": "RoleBased",
            "managedByTenants": [], "subscriptionId": s["id"], "tenantId": s["tenant"],
            "displayName": s["name"], "state": s["state"],
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                     "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"}}


def aks_fqdns(s, c):
    h = hashlib.sha256(f"{s['id']}/{c['resource_group'].lower()}/{c['name'].lower()}".encode()
                       ).hexdigest()
    loc, prefix = c["location"], c["dns_prefix"].lower()
    return {"fqdn": f"{prefix}-{h[:8]}.hcp.{loc}.azmk8s.io",
            "privateFQDN": f"{prefix}-{h[8:16]}.{guid_from(h)}.privatelink.{loc}.azmk8s.io",
            "azurePortalFQDN": f"{prefix}-{h[:8]}.portal.hcp.{loc}.azmk8s.io"}


def render_aks_cluster(s, c):
    sid, rg, name, loc, v = s["id"], c["resource_group"], c["name"], c["location"], c["version"]
    fq = aks_fqdns(s, c)
    node_rg = f"MC_{rg}_{name}_{loc}"
    props = {
        "provisioningState": c["provisioning_state"],
        "powerState": {"code": c["power"]},
        "kubernetesVersion": v,
        "currentKubernetesVersion": v,
        "dnsPrefix": c["dns_prefix"],
    }
    if not c["private"] or c["public_fqdn"]:
        props["fqdn"] = fq["fqdn"]
    props["azurePortalFQDN"] = fq["azurePortalFQDN"]
    if c["private"]:
        props["privateFQDN"] = fq["privateFQDN"]
    props.update({
        "agentPoolProfiles": [{
            "name": "nodepool1", "count": 3, "vmSize": "Standard_D4ds_v5", "osDiskSizeGB": 128,
            "osDiskType": "Ephemeral", "kubeletDiskType": "OS", "maxPods": 250,
            "type": "VirtualMachineScaleSets", "enableAutoScaling": False,
            "provisioningState": c["provisioning_state"], "powerState": {"code": c["power"]},
            "orchestratorVersion": v, "currentOrchestratorVersion": v, "enableNodePublicIP": False,
            "mode": "System", "osType": "Linux", "osSKU": "Ubuntu",
            "nodeImageVersion": "AKSUbuntu-2204gen2containerd-202510.03.0", "enableFIPS": False}],
        "servicePrincipalProfile": {"clientId": "msi"},
        "nodeResourceGroup": node_rg,
        "enableRBAC": True,
        "supportPlan": "KubernetesOfficial",
        "networkProfile": {
            "networkPlugin": "azure", "networkPluginMode": "overlay", "networkPolicy": "none",
            "loadBalancerSku": "standard", "podCidr": "10.244.0.0/16", "serviceCidr": "10.0.0.0/16",
            "dnsServiceIP": "10.0.0.10", "outboundType": "loadBalancer",
            "podCidrs": ["10.244.0.0/16"], "serviceCidrs": ["10.0.0.0/16"], "ipFamilies": ["IPv4"]},
    })
    if c["aad"]:
        props["aadProfile"] = {"managed": True, "enableAzureRBAC": c["azure_rbac"],
                               "tenantID": s["tenant"]}
        if c["server_app"]:
            props["aadProfile"] = {"managed": False, "serverAppID": c["server_app"],
                                   "clientAppID": KUBELOGIN_CLIENT_ID, "tenantID": s["tenant"]}
    props["maxAgentPools"] = 100
    if c["private"]:
        props["apiServerAccessProfile"] = {"enablePrivateCluster": True, "privateDNSZone": "system",
                                           "enablePrivateClusterPublicFQDN": c["public_fqdn"]}
    props.update({
        "identityProfile": {"kubeletidentity": {
            "resourceId": f"/subscriptions/{sid}/resourcegroups/{node_rg}/providers/"
                          f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}-agentpool",
            "clientId": guid_from(f"kubelet-client/{sid}/{rg}/{name}"),
            "objectId": guid_from(f"kubelet-object/{sid}/{rg}/{name}")}},
        "disableLocalAccounts": c["disable_local_accounts"],
        "securityProfile": {},
        "oidcIssuerProfile": {"enabled": False},
    })
    out = {"id": f"/subscriptions/{sid}/resourcegroups/{rg}/providers/"
                 f"Microsoft.ContainerService/managedClusters/{name}",
           "location": loc, "name": name}
    if c["tags"]:
        out["tags"] = dict(c["tags"])
    out.update({"type": "Microsoft.ContainerService/ManagedClusters", "properties": props,
                "identity": {"type": "SystemAssigned",
                             "principalId": guid_from(f"principal/{sid}/{rg}/{name}"),
                             "tenantId": s["tenant"]},
                "sku": {"name": "Base", "tier": "Free"}})
    return out


LOCAL_ACCOUNT_CERT = []


def local_account_cert():
    """(cert, key) base64 PEM of a static client certificate: what a local-accounts
    cluster's clusterUser kubeconfig carries (and fleetctx must never write)."""
    if not LOCAL_ACCOUNT_CERT:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "masterclient")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=730))
                .sign(key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        LOCAL_ACCOUNT_CERT.append((
            base64.b64encode(cert.public_bytes(pem)).decode(),
            base64.b64encode(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption())).decode()))
    return LOCAL_ACCOUNT_CERT[0]


def aks_kubeconfig(s, c, fmt, server):
    """The clusterUser kubeconfig, laid out as AKS writes it."""
    name, user = c["name"], f"clusterUser_{c['resource_group']}_{c['name']}"
    lines = ["apiVersion: v1", "clusters:", "- cluster:",
             f"    certificate-authority-data: {STATE.ca_b64}", f"    server: {server}",
             f"  name: {name}", "contexts:", "- context:", f"    cluster: {name}",
             f"    user: {user}", f"  name: {name}", f"current-context: {name}", "kind: Config",
             "preferences: {}", "users:", f"- name: {user}", "  user:"]
    if not c["aad"]:
        cert, key = local_account_cert()
        token = hashlib.sha256(f"token/{s['id']}/{c['resource_group']}/{name}".encode()).hexdigest()
        lines += [f"    client-certificate-data: {cert}", f"    client-key-data: {key}",
                  f"    token: {token}{token}"]
    elif fmt == "azure":
        lines += ["    auth-provider:", "      config:", f"        apiserver-id: {c['server_app'] or AKS_SERVER_ID}",
                  f"        client-id: {KUBELOGIN_CLIENT_ID}", '        config-mode: "1"',
                  "        environment: AzurePublicCloud", f"        tenant-id: {s['tenant']}",
                  "      name: azure"]
    else:
        lines += ["    exec:", "      apiVersion: client.authentication.k8s.io/v1beta1", "      args:",
                  "      - get-token", "      - --environment", "      - AzurePublicCloud",
                  "      - --server-id", f"      - {c['server_app'] or AKS_SERVER_ID}",
                  "      - --client-id",
                  f"      - {KUBELOGIN_CLIENT_ID}", "      - --tenant-id", f"      - {s['tenant']}",
                  "      - --login", "      - devicecode", "      command: kubelogin",
                  "      env: null", "      installHint: |2", "",
                  "        kubelogin is not installed which is required to connect to AAD enabled "
                  "cluster.", "", "        To learn more, please go to https://aka.ms/aks/kubelogin",
                  "      provideClusterInfo: false"]
    return "\n".join(lines) + "\n"


def aks_cluster_tenants(name):
    """Tenants of the fleet's clusters called `name` (the /aks/NAME prefix)."""
    with STATE.lock:
        return {s["tenant"] for s in STATE.azure_fleet["subscriptions"]
                for c in s["clusters"] if c["name"].lower() == name.lower()}


def aks_cluster_audiences(name):
    """What the API server of the clusters called `name` accepts as `aud`: the AKS
    server application, or a legacy Entra cluster's own server application."""
    with STATE.lock:
        own = {c["server_app"] for s in STATE.azure_fleet["subscriptions"]
               for c in s["clusters"] if c["name"].lower() == name.lower() and c["server_app"]}
    return tuple(own) or (AKS_SERVER_ID,)


# -- Entra server -------------------------------------------------------------------

ENTRA_TOKEN_RE = re.compile(r"^/([^/]+)/oauth2/(v2\.0/)?token/?$", re.I)
ENTRA_DEVICECODE_RE = re.compile(r"^/([^/]+)/oauth2/v2\.0/devicecode/?$", re.I)
ENTRA_OPENID_RE = re.compile(r"^/([^/]+)(/v2\.0)?/\.well-known/openid-configuration/?$", re.I)
ENTRA_KEYS_RE = re.compile(r"^/([^/]+)/discovery(/v2\.0)?/keys/?$", re.I)
ENTRA_INSTANCE_RE = re.compile(r"^/([^/]+)/discovery/instance/?$", re.I)


class EntraHandler(BaseHandler):
    def setup(self):
        super().setup()
        self.connection.settimeout(30)

    def base(self):
        return STATE.entra_url

    def do_GET(self):
        parts = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parts.path)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        if path.rstrip("/").lower() == "/msi/token":
            return self.msi_token(query)
        m = ENTRA_OPENID_RE.match(path)
        if m:
            STATE.bump("entra_discovery", "openid-configuration")
            return self.openid_configuration(m.group(1), bool(m.group(2)))
        m = ENTRA_KEYS_RE.match(path)
        if m:
            STATE.bump("entra_discovery", "keys")
            return self.keys(m.group(1), bool(m.group(2)))
        m = ENTRA_INSTANCE_RE.match(path)
        if m:
            STATE.bump("entra_discovery", "instance")
            return self.instance_discovery(query)
        STATE.bump("entra_discovery", "other")
        return self.send_json(404, {"error": "not_found", "error_description": f"no route GET {path}"})

    def do_POST(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        body = self.read_body()
        m = ENTRA_TOKEN_RE.match(path)
        if m:
            return self.token(m.group(1), not m.group(2), body, path)
        m = ENTRA_DEVICECODE_RE.match(path)
        if m:
            return self.devicecode(m.group(1), body)
        return self.send_json(404, {"error": "not_found", "error_description": f"no route POST {path}"})

    def fail(self, code, **fmt):
        status, body = entra_error(code, **fmt)
        return self.send_json(status, body)

    # -- discovery ------------------------------------------------------------
    def openid_configuration(self, seg, v2):
        tenant = STATE.azure_tenant(seg)
        if tenant is None:
            status, body = entra_error(90002, status=400, error="invalid_tenant", tenant=seg)
            return self.send_json(status, body)
        b = self.base()
        generic = tenant in GENERIC_TENANTS
        t = seg if generic else tenant
        iss_t = "{tenantid}" if generic else tenant
        region = None if generic else "EU"
        if v2:
            doc = {
                "token_endpoint": f"{b}/{t}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                          "client_secret_basic"],
                "jwks_uri": f"{b}/{t}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{b}/{iss_t}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
                "authorization_endpoint": f"{b}/{t}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{b}/{t}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{b}/{t}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                     "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat",
                                     "auth_time", "acr", "nonce", "preferred_username", "name",
                                     "tid", "ver", "at_hash", "c_hash", "email"],
                "kerberos_endpoint": f"{b}/{t}/kerberos",
            }
        else:
            doc = {
                "token_endpoint": f"{b}/{t}/oauth2/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                          "client_secret_basic"],
                "jwks_uri": f"{b}/common/discovery/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "token id_token",
                                             "token"],
                "scopes_supported": ["openid"],
                "issuer": f"https://sts.windows.net/{iss_t}/",
                "microsoft_multi_refresh_token": True,
                "authorization_endpoint": f"{b}/{t}/oauth2/authorize",
                "device_authorization_endpoint": f"{b}/{t}/oauth2/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{b}/{t}/oauth2/logout",
                "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                     "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat",
                                     "auth_time", "acr", "amr", "nonce", "email", "given_name",
                                     "family_name", "nickname"],
                "check_session_iframe": f"{b}/{t}/oauth2/checksession",
                "userinfo_endpoint": f"{b}/{t}/openid/userinfo",
                "kerberos_endpoint": f"{b}/{t}/kerberos",
            }
        doc.update({"tenant_region_scope": region, "cloud_instance_name": "microsoftonline.com",
                    "cloud_graph_host_name": "graph.windows.net",
                    "msgraph_host": "graph.microsoft.com", "rbac_url": "https://pas.windows.net"})
        return self.send_json(200, doc)

    def keys(self, seg, v2):
        tenant = STATE.azure_tenant(seg)
        if tenant is None:
            status, body = entra_error(90002, status=400, error="invalid_tenant", tenant=seg)
            return self.send_json(status, body)
        nums = STATE.entra_public_key.public_numbers()

        def n_bytes(i):
            return i.to_bytes((i.bit_length() + 7) // 8, "big")

        key = {"kty": "RSA", "use": "sig", "kid": ENTRA_KID, "x5t": STATE.entra_x5t,
               "n": b64url(n_bytes(nums.n)), "e": b64url(n_bytes(nums.e)),
               "x5c": [base64.b64encode(STATE.entra_cert_der).decode()],
               "cloud_instance_name": "microsoftonline.com"}
        if v2:
            key["issuer"] = (f"{self.base()}/"
                             f"{'{tenantid}' if tenant in GENERIC_TENANTS else tenant}/v2.0")
        return self.send_json(200, {"keys": [key]})

    def instance_discovery(self, query):
        """MSAL's instance discovery (/common/discovery/instance?api-version=1.1&
        authorization_endpoint=...): this host is its own, only, alias."""
        netloc = f"127.0.0.1:{self.server.server_address[1]}"
        ae = (query.get("authorization_endpoint") or [""])[0]
        tenant, v1 = "common", False
        if ae:
            u = urllib.parse.urlsplit(ae)
            # MSAL names the instance by its host alone (no port).
            if (u.hostname or "").lower() not in ("127.0.0.1", "localhost"):
                return self.fail(50049)
            segs = [x for x in u.path.split("/") if x]
            tenant = segs[0] if segs else "common"
            v1 = "v2.0" not in segs
        well_known = ".well-known/openid-configuration" if v1 else "v2.0/.well-known/openid-configuration"
        return self.send_json(200, {
            "tenant_discovery_endpoint": f"{self.base()}/{tenant}/{well_known}",
            "api-version": "1.1",
            "metadata": [{"preferred_network": netloc, "preferred_cache": netloc,
                          "aliases": [netloc]}]})

    # -- token endpoint -----------------------------------------------------
    def token(self, seg, v1, body, path):
        STATE.bump("entra_token_requests")
        with STATE.lock:
            d = STATE.delay_ms
        if d > 0:
            time.sleep(d / 1000.0)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        one = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        grant = one("grant_type")
        client_id, secret = one("client_id"), one("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":  # client_secret_basic
            try:
                cid, _, sec = base64.b64decode(auth[6:]).decode().partition(":")
                client_id = client_id or urllib.parse.unquote_plus(cid)
                secret = secret or urllib.parse.unquote_plus(sec)
            except Exception:
                pass
        if grant == "client_credentials":
            kind = ("secret" if secret else "other" if not one("client_assertion") else
                    "cert" if self.assertion_is_self_signed(one("client_assertion"), client_id)
                    else "federated")
        else:
            kind = {"refresh_token": "refresh_token", DEVICE_CODE_GRANT: "device_code"}.get(grant, "other")
        STATE.bump("entra_token_kinds", kind)
        status = STATE.take_fault("entra")
        if status:
            code = {400: 50027, 401: 7000215}.get(status, 90033)
            st, b = entra_error(code, status=status, client_id=client_id)
            headers = [("Retry-After", "1")] if status in (429, 503) else []
            return self.send_json(st, b, headers)
        tenant = STATE.azure_tenant(seg)
        if tenant is None:
            return self.fail(90002, tenant=seg)
        if grant == "client_credentials":
            return self.client_credentials(seg, tenant, form, client_id, secret, v1, path)
        if grant == "refresh_token":
            return self.refresh_grant(seg, tenant, form, client_id, v1)
        if grant == DEVICE_CODE_GRANT:
            return self.device_code_grant(seg, tenant, form, client_id)
        if not grant:
            return self.fail(900144, param="grant_type")
        return self.fail(70003, grant=grant)

    @staticmethod
    def assertion_is_self_signed(assertion, client_id):
        try:
            _, claims, _, _ = jwt_split(assertion)
        except ValueError:
            return True
        return str(claims.get("iss", "")).lower() == client_id.lower()

    def tenant_name(self, tenant):
        with STATE.lock:
            t = STATE.azure_tenants.get(tenant)
        return t["domain"] if t else tenant

    def client_credentials(self, seg, tenant, form, client_id, secret, v1, path):
        one = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        if tenant in GENERIC_TENANTS:
            return self.fail(90002, tenant=seg)
        if not client_id:
            return self.fail(900144, param="client_id")
        with STATE.lock:
            app = STATE.azure_apps.get(client_id.lower())
            app = dict(app) if app else None
        if (app is None or app["kind"] == "msi"
                or (app["tenant"] != tenant and tenant not in app.get("guest_tenants", ()))):
            return self.fail(700016, client_id=client_id, tenant_name=self.tenant_name(tenant))
        if v1:
            resource = one("resource")
            if not resource:
                return self.fail(900144, param="resource")
        else:
            resource, err = resource_of_scope(one("scope"), True)
            if err:
                return self.fail(err[0], **err[1])
        aud = aud_of_resource(resource)
        if aud is None:
            return self.fail(500011, resource=resource, tenant_name=self.tenant_name(tenant))
        if app["revoked"]:
            if app["kind"] == "secret":
                return self.fail(7000222, client_id=app["client_id"])
            return self.fail(7000112, client_id=app["client_id"], name=app["name"])
        assertion = one("client_assertion")
        if secret:
            if not any(hmac.compare_digest(secret, s) for s in app["secrets"]):
                return self.fail(7000215, client_id=app["client_id"])
            kind = "secret"
        elif assertion:
            if one("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                return self.fail(900144, param="client_assertion_type")
            kind = self.check_assertion(app, seg, tenant, assertion)
            if kind is None:
                return None
        else:
            return self.fail(7000218)
        with STATE.lock:
            lifetime = STATE.azure_expires_in
        tok, exp, nbf = mint_entra_token(tenant, aud, kind, lifetime, app=app)
        if v1:
            return self.send_json(200, {"token_type": "Bearer", "expires_in": str(lifetime),
                                        "ext_expires_in": str(lifetime), "expires_on": str(exp),
                                        "not_before": str(nbf), "resource": resource,
                                        "access_token": tok})
        return self.send_json(200, {"token_type": "Bearer", "expires_in": lifetime,
                                    "ext_expires_in": lifetime, "access_token": tok})

    def token_endpoints(self, seg, tenant):
        """What a client assertion's aud may be: this tenant's token endpoints here."""
        port = self.server.server_address[1]
        out = set()
        for host in (f"https://127.0.0.1:{port}", f"https://localhost:{port}"):
            for t in {seg, tenant}:
                out.add(f"{host}/{t}/oauth2/v2.0/token")
                out.add(f"{host}/{t}/oauth2/token")
        return out

    def check_assertion(self, app, seg, tenant, assertion):
        """The kind ("cert" or "federated") of a valid client assertion, else None
        after answering the error."""
        try:
            return check_client_assertion(app, assertion, self.token_endpoints(seg, tenant))
        except EntraReject as e:
            self.fail(e.code, **e.fmt)
            return None

    # -- user logins (refresh token, device code) ---------------------------------
    def user_answer(self, tenant, client_id, scope, user):
        resource, err = resource_of_scope(scope, False)
        if err:
            return self.fail(err[0], **err[1])
        aud = aud_of_resource(resource)
        if aud is None:
            return self.fail(500011, resource=resource, tenant_name=self.tenant_name(tenant))
        if tenant in GENERIC_TENANTS:
            tenant = user["tenant"]
        with STATE.lock:
            lifetime = STATE.azure_expires_in
        tok, exp, _ = mint_entra_token(tenant, aud, "user", lifetime, user=user, client_id=client_id)
        rt = "1.AXkA" + b64url(secrets.token_bytes(48))
        with STATE.lock:
            STATE.azure_refresh_tokens[rt] = {"upn": user["upn"], "client_id": client_id.lower(),
                                              "issued_at": time.time()}
        now = int(time.time())
        id_token = sign_jwt(STATE.entra_key, {
            "aud": client_id, "iss": f"{self.base()}/{tenant}/v2.0", "iat": now - ENTRA_BACKDATE,
            "nbf": now - ENTRA_BACKDATE, "exp": now + 3600, "name": user["name"], "oid": user["oid"],
            "preferred_username": user["upn"], "rh": "0.A" + b64url(secrets.token_bytes(24)) + ".",
            "sub": b64url(hashlib.sha256(f"{user['oid']}/{client_id}".encode()).digest())[:43],
            "tid": tenant, "uti": b64url(secrets.token_bytes(16))[:22], "ver": "2.0"},
            header={"typ": "JWT", "alg": "RS256", "kid": ENTRA_KID})
        client_info = b64url(json.dumps({"uid": user["oid"], "utid": user["tenant"]}).encode())
        scopes = " ".join(s for s in scope.split() if s not in RESERVED_SCOPES)
        return self.send_json(200, {"token_type": "Bearer", "scope": scopes, "expires_in": lifetime,
                                    "ext_expires_in": lifetime, "access_token": tok,
                                    "refresh_token": rt, "id_token": id_token,
                                    "client_info": client_info})

    def refresh_grant(self, seg, tenant, form, client_id, v1):
        one = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        if not client_id:
            return self.fail(900144, param="client_id")
        rt = one("refresh_token")
        with STATE.lock:
            rec = STATE.azure_refresh_tokens.get(rt)
            user = STATE.azure_users.get(rec["upn"]) if rec else None
        if user is None or (rec["client_id"] and rec["client_id"] != client_id.lower()):
            return self.fail(700082, issued=entra_time(time.time() - 91 * 86400))
        scope = one("scope") if not v1 else one("resource") + "/.default"
        return self.user_answer(tenant, client_id, scope, user)

    def devicecode(self, seg, body):
        """Device code flow, approved at once by the tenant's first user (so
        `az login --use-device-code` and kubelogin's devicecode login need no browser)."""
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        one = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        tenant = STATE.azure_tenant(seg)
        if tenant is None:
            return self.fail(90002, tenant=seg)
        if not one("client_id"):
            return self.fail(900144, param="client_id")
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        device_code = "DAQABIQEAAAB" + b64url(secrets.token_bytes(96))
        with STATE.lock:
            STATE.azure_device_codes[device_code] = {
                "client_id": one("client_id").lower(), "scope": one("scope"), "tenant": tenant,
                "expires_at": time.time() + 900}
        uri = "https://microsoft.com/devicelogin"
        return self.send_json(200, {
            "user_code": user_code, "device_code": device_code, "verification_uri": uri,
            "expires_in": 900, "interval": 5,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the code "
                       f"{user_code} to authenticate."})

    def device_code_grant(self, seg, tenant, form, client_id):
        code = (form.get("device_code") or [""])[0]
        with STATE.lock:
            rec = STATE.azure_device_codes.pop(code, None)
            users = list(STATE.azure_users.values())
        if rec is None or rec["expires_at"] < time.time() or not users:
            return self.fail(70020)
        user = next((u for u in users if u["tenant"] == rec["tenant"]), users[0])
        return self.user_answer(tenant, client_id or rec["client_id"], rec["scope"], user)

    # -- App Service managed identity --------------------------------------------
    def msi_error(self, status, message):
        return self.send_json(status, {"statusCode": status, "message": message,
                                       "correlationId": new_guid()})

    def msi_token(self, query):
        """GET /msi/token?api-version=2019-08-01&resource=R[&client_id|principal_id|
        object_id|mi_res_id|msi_res_id=...] with X-IDENTITY-HEADER, as App Service's
        identity endpoint (IDENTITY_ENDPOINT) answers."""
        STATE.bump("msi_token_requests")
        status = STATE.take_fault("msi")
        if status:
            return self.msi_error(status, "injected failure")
        one = lambda k: (query.get(k) or [""])[0]  # noqa: E731
        given = self.headers.get("X-IDENTITY-HEADER")
        if given is None or not hmac.compare_digest(given, STATE.msi_header or ""):
            return self.msi_error(401, "Unauthorized request: the X-IDENTITY-HEADER header is "
                                       "missing or invalid.")
        if one("api-version") != "2019-08-01":
            return self.msi_error(400, f"Invalid api-version '{one('api-version')}'. Supported: "
                                       "2019-08-01.")
        resource = one("resource")
        if not resource:
            return self.msi_error(400, "Required query variable 'resource' is missing.")
        with STATE.lock:
            app = STATE.azure_apps.get(AZURE_MSI_APP)
            app = dict(app) if app else None
        wanted = [(k, one(k)) for k in ("client_id", "principal_id", "object_id", "mi_res_id",
                                        "msi_res_id") if one(k)]
        ok = app is not None and not app["revoked"] and all(
            v.lower() == {"client_id": app["client_id"], "principal_id": app["oid"],
                          "object_id": app["oid"]}.get(k, AZURE_MSI_RESOURCE_ID.lower())
            for k, v in wanted)
        if not ok:
            return self.msi_error(400, "Unable to load the proper Managed Identity.")
        aud = aud_of_resource(resource)
        if aud is None:
            _, b = entra_error(500011, resource=resource, tenant_name=self.tenant_name(app["tenant"]))
            return self.msi_error(400, b["error_description"])
        with STATE.lock:
            lifetime = STATE.azure_expires_in
        tok, exp, _ = mint_entra_token(app["tenant"], aud, "msi", lifetime, app=app)
        return self.send_json(200, {"access_token": tok, "expires_on": str(exp),
                                    "resource": resource, "token_type": "Bearer",
                                    "client_id": app["client_id"]})


# -- ARM server ---------------------------------------------------------------------

ARM_SUBS_RE = re.compile(r"^/subscriptions/?$", re.I)
ARM_SUB_RE = re.compile(r"^/subscriptions/([^/]+)/?$", re.I)
ARM_TENANTS_RE = re.compile(r"^/tenants/?$", re.I)
ARM_METADATA_RE = re.compile(r"^/metadata/endpoints/?$", re.I)
ARM_MC_LIST_RE = re.compile(r"^/subscriptions/([^/]+)(?:/resourceGroups/([^/]+))?/providers/"
                            r"Microsoft\.ContainerService/managedClusters/?$", re.I)
ARM_MC_RE = re.compile(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/"
                       r"Microsoft\.ContainerService/managedClusters/([^/]+?)"
                       r"(/listClusterUserCredential)?/?$", re.I)


def arm_error(code, message):
    return {"error": {"code": code, "message": message}}


class ArmHandler(BaseHandler):
    def setup(self):
        super().setup()
        self.connection.settimeout(30)

    def do_GET(self):
        self.handle_arm()

    def do_POST(self):
        self.read_body()
        self.handle_arm()

    do_PUT = do_PATCH = do_DELETE = do_POST

    def handle_arm(self):
        STATE.bump("arm_requests")
        with STATE.lock:
            d = STATE.arm_delay_ms
        if d > 0:
            time.sleep(d / 1000.0)
        # `az` joins its "<arm>/" endpoint and "/subscriptions": tolerate "//".
        parts = urllib.parse.urlsplit(re.sub(r"^/{2,}", "/", self.path))
        path = re.sub(r"/{2,}", "/", urllib.parse.unquote(parts.path))
        self.query = {k.lower(): v for k, v in
                      urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
        if ARM_METADATA_RE.match(path) and self.command == "GET":
            return self.metadata_endpoints()
        status = STATE.take_fault("arm")
        if status:
            return self.status_error(status, "injected failure")
        self.claims = self.authenticate()
        if self.claims is None:
            return None
        if not self.one("api-version"):
            return self.send_json(400, arm_error(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests."))
        get = self.command == "GET"
        if ARM_SUBS_RE.match(path) and get:
            return self.list_subscriptions()
        if ARM_TENANTS_RE.match(path) and get:
            return self.list_tenants()
        m = ARM_SUB_RE.match(path)
        if m and get:
            return self.get_subscription(m.group(1))
        m = ARM_MC_LIST_RE.match(path)
        if m and get:
            return self.list_clusters(m.group(1), m.group(2))
        m = ARM_MC_RE.match(path)
        if m and bool(m.group(4)) == (self.command == "POST") and self.command in ("GET", "POST"):
            return self.cluster(m.group(1), m.group(2), m.group(3), bool(m.group(4)))
        if m:
            return self.send_json(405, arm_error(
                "HttpMethodNotAllowed",
                f"The requested resource does not support http method '{self.command}'."))
        return self.send_json(404, arm_error("NotFound", f"No HTTP resource was found that matches "
                                                         f"the request URI '{path}'."))

    def one(self, k):
        return (self.query.get(k.lower()) or [""])[0]

    def status_error(self, status, message):
        headers = [("Retry-After", "1")] if status == 429 else []
        return self.send_json(status, arm_error(ARM_ERROR_CODES.get(status, "InternalServerError"),
                                                message), headers)

    def unauthorized(self, code, message, tenant=None):
        STATE.bump("arm_unauthorized")
        authz = f"{STATE.entra_url}/{tenant}" if tenant else f"{STATE.entra_url}/"
        err = "invalid_token" if code != "AuthenticationFailed" else "invalid_request"
        hdr = (f'Bearer authorization_uri="{authz}", error="{err}", '
               f'error_description="{message}"')
        return self.send_json(401, arm_error(code, message), [("WWW-Authenticate", hdr)])

    def authenticate(self):
        if "Authorization" not in self.headers:
            self.unauthorized("AuthenticationFailed",
                              "Authentication failed. The 'Authorization' header is missing.")
            return None
        tok = self.bearer()
        if not tok:
            self.unauthorized("AuthenticationFailed", "Authentication failed. The 'Authorization' "
                                                      "header is provided in an invalid format.")
            return None
        try:
            claims = verify_entra_jwt(tok, STATE.entra_public_key,
                                      ARM_AUDIENCES + (STATE.arm_url + "/",),
                                      revoked=azure_token_revoked)
        except AzureReject as e:
            vlog(f"arm: token rejected: {e.code}")
            self.unauthorized(e.code, e.message)
            return None
        STATE.bump("arm_identities", claims.get("upn") or claims.get("appid"))
        return claims

    def caller_ids(self):
        c = self.claims
        return {str(x).lower() for x in (c.get("appid"), c.get("oid"), c.get("upn")) if x}

    def authorization_failed(self, action, scope):
        c = self.claims
        who = c.get("upn") or c.get("appid")
        return self.send_json(403, arm_error(
            "AuthorizationFailed",
            f"The client '{who}' with object id '{c.get('oid')}' does not have authorization to "
            f"perform action '{action}' over scope '{scope}' or the scope is invalid. If access was "
            "recently granted, please refresh your credentials."))

    def page(self, items, size, link_path, token_name):
        raw = self.one("$skiptoken")
        try:
            text = b64url_decode(raw).decode() if raw else "o:0"
            assert text.startswith("o:")
            start = int(text[2:])
            assert start >= 0
        except (ValueError, AssertionError, UnicodeDecodeError):
            self.send_json(400, arm_error("InvalidSkipToken", f"The skip token '{raw}' is invalid."))
            return None
        chunk = items[start:start + size]
        nxt = None
        if start + size < len(items):
            q = urllib.parse.urlencode({"api-version": self.one("api-version"),
                                        token_name: b64url(f"o:{start + size}".encode())})
            nxt = f"{STATE.arm_url}{link_path}?{q}"
        return chunk, nxt

    # -- routes -------------------------------------------------------------
    def metadata_endpoints(self):
        """Cloud metadata (unauthenticated), as `az cloud register
        --endpoint-resource-manager <arm>` reads it (api-version 2022-09-01: one
        object; older: a list of clouds)."""
        doc = {
            "portal": "https://portal.azure.com",
            "authentication": {"loginEndpoint": STATE.entra_url,
                               "audiences": ["https://management.core.windows.net/",
                                             "https://management.azure.com/"],
                               "tenant": "common", "identityProvider": "AAD"},
            "media": "https://rest.media.azure.net",
            "graphAudience": "https://graph.windows.net/",
            "graph": "https://graph.windows.net/",
            "name": "AzureCloud",
            "suffixes": {"azureDataLakeStoreFileSystem": "azuredatalakestore.net",
                         "acrLoginServer": "azurecr.io", "sqlServerHostname": "database.windows.net",
                         "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
                         "keyVaultDns": "vault.azure.net", "storage": "core.windows.net",
                         "azureFrontDoorEndpointSuffix": "azurefd.net",
                         "storageSyncEndpointSuffix": "afs.azure.net",
                         "mhsmDns": "managedhsm.azure.net", "mysqlServerEndpoint":
                             "mysql.database.azure.com",
                         "postgresqlServerEndpoint": "postgres.database.azure.com",
                         "mariadbServerEndpoint": "mariadb.database.azure.com",
                         "synapseAnalytics": "dev.azuresynapse.net",
                         "attestationEndpoint": "attest.azure.net"},
            "batch": "https://batch.core.windows.net/",
            "resourceManager": f"{STATE.arm_url}/",
            "vmImageAliasDoc": "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/main/"
                               "arm-compute/quickstart-templates/aliases.json",
            "activeDirectoryDataLake": "https://datalake.azure.net/",
            "sqlManagement": "https://management.core.windows.net:8443/",
            "microsoftGraphResourceId": "https://graph.microsoft.com/",
            "appInsightsResourceId": "https://api.applicationinsights.io",
            "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/"
                                                     "v2/track",
            "attestationResourceId": "https://attest.azure.net",
            "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
            "logAnalyticsResourceId": "https://api.loganalytics.io",
            "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net",
        }
        version = self.one("api-version")
        return self.send_json(200, doc if version >= "2022-09-01" else [doc])

    def visible(self, s):
        """Whether the caller sees subscription s (its tenant, and an RBAC role there)."""
        if s["tenant"] != str(self.claims.get("tid", "")).lower():
            return False
        return s["access"] is None or bool(self.caller_ids() & set(s["access"]))

    def list_subscriptions(self):
        STATE.bump("arm_subscription_pages")
        with STATE.lock:
            fleet = STATE.azure_fleet
            size = fleet["subscription_page_size"]
            subs = [render_subscription(s) for s in fleet["subscriptions"]
                    if s["state"] != "Deleted" and self.visible(s)]
        paged = self.page(subs, size, "/subscriptions", "$skiptoken")
        if paged is None:
            return None
        chunk, nxt = paged
        out = {"value": chunk, "count": {"type": "Total", "value": len(subs)}}
        if nxt:
            out["nextLink"] = nxt
        return self.send_json(200, out)

    def list_tenants(self):
        """Every tenant the identity is in, whichever tenant its token is for (an
        app's home tenant and those it was added to as a guest)."""
        tid = str(self.claims.get("tid", "")).lower()
        appid = str(self.claims.get("appid", "")).lower()
        with STATE.lock:
            app = STATE.azure_apps.get(appid)
            tids = [tid] if app is None else [app["tenant"], *app.get("guest_tenants", ())]
            known = {t: dict(STATE.azure_tenants.get(t) or {"id": t, "domain": t}) for t in tids}
        return self.send_json(200, {"value": [{
            "id": f"/tenants/{t}", "tenantId": t, "countryCode": "NL",
            "displayName": known[t].get("name") or known[t]["domain"],
            "domains": [known[t]["domain"]],
            "tenantCategory": "Home" if app is None or t == app["tenant"] else "ProjectedBy",
            "defaultDomain": known[t]["domain"], "tenantType": "AAD"} for t in tids]})

    def subscription(self, sid):
        """The subscription record after the tenant check, or None after answering."""
        with STATE.lock:
            s = next((x for x in STATE.azure_fleet["subscriptions"] if x["id"] == sid.lower()), None)
            s = json.loads(json.dumps(s)) if s else None
        if s is None or s["state"] == "Deleted":
            self.send_json(404, arm_error("SubscriptionNotFound",
                                          f"The subscription '{sid}' could not be found."))
            return None
        tid = str(self.claims.get("tid", "")).lower()
        if s["tenant"] != tid:
            self.unauthorized(
                "InvalidAuthenticationTokenTenant",
                f"The access token is from the wrong issuer 'https://sts.windows.net/{tid}/'. It "
                f"must match the tenant 'https://sts.windows.net/{s['tenant']}/' associated with "
                f"this subscription. Please use the authority (URL) "
                f"'https://login.windows.net/{s['tenant']}' to get the token. Note, if the "
                "subscription is transferred to another tenant there is no impact to the services, "
                "but information about new tenant could take time to propagate (up to an hour). If "
                "you just transferred your subscription and see this error message, please try "
                "back later.", tenant=s["tenant"])
            return None
        return s

    def get_subscription(self, sid):
        s = self.subscription(sid)
        if s is None:
            return None
        if not self.visible(s):
            return self.send_json(404, arm_error("SubscriptionNotFound",
                                                 f"The subscription '{sid}' could not be found."))
        return self.send_json(200, render_subscription(s))

    def take_sub_error(self, sid):
        """The subscription's injected error, counting down error_count."""
        with STATE.lock:
            s = next((x for x in STATE.azure_fleet["subscriptions"] if x["id"] == sid.lower()), None)
            if s is None or s["error"] is None:
                return None
            if s["error_count"] is not None:
                if s["error_count"] <= 0:
                    return None
                s["error_count"] -= 1
            return s["error"], s["retry_after"]

    def list_clusters(self, sid, rg):
        STATE.bump("arm_cluster_pages", sid.lower())
        s = self.subscription(sid)
        if s is None:
            return None
        scope = f"/subscriptions/{s['id']}" + (f"/resourceGroups/{rg}" if rg else "")
        if not self.visible(s):
            return self.authorization_failed("Microsoft.ContainerService/managedClusters/read", scope)
        err = self.take_sub_error(sid)
        if err:
            return self.sub_error(s, err, scope)
        clusters = [c for c in s["clusters"] if rg is None or c["resource_group"].lower() == rg.lower()]
        if rg is not None and not clusters:
            return self.send_json(404, arm_error("ResourceGroupNotFound",
                                                 f"Resource group '{rg}' could not be found."))
        if not s["registered"]:
            clusters = []
        with STATE.lock:
            size = STATE.azure_fleet["page_size"]
        link = f"{scope}/providers/Microsoft.ContainerService/managedClusters"
        paged = self.page(clusters, size, link, "$skipToken")
        if paged is None:
            return None
        chunk, nxt = paged
        out = {"value": [render_aks_cluster(s, c) for c in chunk]}
        if nxt:
            out["nextLink"] = nxt
        return self.send_json(200, out)

    def sub_error(self, s, err, scope):
        status, retry_after = err
        if status in ("AuthorizationFailed", 403):
            return self.authorization_failed("Microsoft.ContainerService/managedClusters/read", scope)
        if status in ("SubscriptionNotFound", 404):
            return self.send_json(404, arm_error("SubscriptionNotFound",
                                                 f"The subscription '{s['id']}' could not be found."))
        if status == 429:
            return self.send_json(429, arm_error(
                "TooManyRequests", f"Number of 'read' requests for subscription '{s['id']}' actor "
                                   f"'{self.claims.get('oid')}' exceeded. Please try again after "
                                   f"'{retry_after}' seconds after additional tokens are available. "
                                   "Refer to https://aka.ms/arm-throttling"),
                [("Retry-After", str(retry_after))])
        if status == 500:
            return self.send_json(500, arm_error(
                "InternalServerError", "Encountered internal server error. Diagnostic information: "
                                       f"timestamp '{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}'"
                                       f", subscription id '{s['id']}', tracking id '{new_guid()}', "
                                       f"request correlation id '{new_guid()}'."))
        return self.status_error(status, "injected failure")

    def cluster(self, sid, rg, name, credential):
        s = self.subscription(sid)
        if s is None:
            return None
        c = next((x for x in s["clusters"] if x["resource_group"].lower() == rg.lower()
                  and x["name"].lower() == name.lower()), None)
        fqdn_param = self.one("server-fqdn").lower()
        if credential:
            key = f"{s['id']}/{c['resource_group'] if c else rg}/{c['name'] if c else name}"
            fq = fqdn_param or "none"
            STATE.bump("arm_credential_requests", c["name"] if c else name)
            STATE.bump("arm_credential_server_fqdn", fq)
            with STATE.lock:
                per = STATE.stats["arm_credentials"].setdefault(key, {})
                per[fq] = per.get(fq, 0) + 1
        else:
            STATE.bump("arm_cluster_gets")
        scope = (f"/subscriptions/{s['id']}/resourceGroups/{rg}/providers/"
                 f"Microsoft.ContainerService/managedClusters/{name}")
        action = ("Microsoft.ContainerService/managedClusters/listClusterUserCredential/action"
                  if credential else "Microsoft.ContainerService/managedClusters/read")
        if not self.visible(s):
            return self.authorization_failed(action, scope)
        if c is None or not s["registered"]:
            if not any(x["resource_group"].lower() == rg.lower() for x in s["clusters"]):
                return self.send_json(404, arm_error("ResourceGroupNotFound",
                                                     f"Resource group '{rg}' could not be found."))
            return self.send_json(404, arm_error(
                "ResourceNotFound", f"The Resource 'Microsoft.ContainerService/managedClusters/"
                                    f"{name}' under resource group '{rg}' was not found. For more "
                                    "details please go to https://aka.ms/ARMResourceNotFoundFix"))
        if not credential:
            return self.send_json(200, render_aks_cluster(s, c))
        with STATE.lock:
            live = next((x for x in STATE.azure_fleet["subscriptions"] if x["id"] == s["id"]), None)
            lc = next((x for x in (live or {}).get("clusters", [])
                       if x["name"] == c["name"] and x["resource_group"] == c["resource_group"]), None)
            err = lc and lc["credential_error"]
            if err is not None and lc["credential_error_count"] is not None:
                if lc["credential_error_count"] > 0:
                    lc["credential_error_count"] -= 1
                else:
                    err = None
        if err == 403:
            return self.authorization_failed(action, scope)
        if err:
            return self.status_error(err, "injected failure")
        if fqdn_param not in ("", "public", "private"):
            return self.send_json(400, arm_error(
                "InvalidParameter", f"The value '{fqdn_param}' of parameter 'server-fqdn' is "
                                    "invalid: it must be 'public' or 'private'."))
        if fqdn_param == "public" and c["private"] and not c["public_fqdn"]:
            return self.send_json(400, arm_error(
                "BadRequest", "The cluster is a private cluster without a public FQDN: "
                              "server-fqdn=public is not available."))
        fmt = self.one("format").lower() or "exec"
        if fmt not in ("exec", "azure"):
            return self.send_json(400, arm_error(
                "InvalidParameter", f"The value '{fmt}' of parameter 'format' is invalid: it must "
                                    "be 'azure' or 'exec'."))
        config = aks_kubeconfig(s, c, fmt, f"{STATE.kube_url}/aks/{c['name']}")
        return self.send_json(200, {"kubeconfigs": [
            {"name": "clusterUser", "value": base64.b64encode(config.encode()).decode()}]})


# -- Self-test ---------------------------------------------------------------------


def azure_self_test(check):
    """--self-test's Azure part: issued tokens as ARM and the API server check them,
    and client assertions (certificate and federated) as the token endpoint does."""
    import tempfile
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    STATE.entra_key, STATE.entra_public_key, STATE.entra_x5t = key, key.public_key(), "self-test"
    sp = azure_app(AZURE_SECRET_APP, secrets_=["s"])
    tok, exp, nbf = mint_entra_token(AZURE_TENANT, AKS_SERVER_ID, "secret", 3599, app=sp)

    def verifies(t, audiences=(AKS_SERVER_ID,), now=None, public_key=key.public_key()):
        try:
            return verify_entra_jwt(t, public_key, audiences, now=now)["appid"] == AZURE_SECRET_APP
        except AzureReject as e:
            if VERBOSE:
                print(f"     rejected: {e.code}")
            return False

    head, body, sig = tok.split(".")
    forged = dict(json.loads(b64url_decode(body)), appid=AZURE_CERT_APP)
    tampered = f"{head}.{b64url(json.dumps(forged).encode())}.{sig}"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    check("Entra token verifies", verifies(tok))
    check("Entra token with a tampered claim rejected", not verifies(tampered))
    check("Entra token signed by another key rejected",
          not verifies(tok, public_key=other.public_key()))
    check("Entra token for another audience (ARM) rejected", not verifies(tok, ARM_AUDIENCES))
    check("Entra token expired rejected", not verifies(tok, now=exp + 1))
    check("Entra token before nbf rejected", not verifies(tok, now=nbf - 1))

    with tempfile.TemporaryDirectory() as tmp:
        ckey, ccert = _rsa_key_and_cert(os.path.join(tmp, "sp.pem"), "self-test-sp")
    tp = cert_thumbprints(ccert)
    app = azure_app(AZURE_CERT_APP, certs=[tp])
    ep = f"https://127.0.0.1:1/{AZURE_TENANT}/oauth2/v2.0/token"
    now = int(time.time())

    def assertion(header, signer=ckey, **claims):
        base = {"aud": ep, "iss": AZURE_CERT_APP, "sub": AZURE_CERT_APP, "jti": new_guid(),
                "nbf": now, "exp": now + 600}
        return sign_jwt(signer, dict(base, **claims), header=header)

    def accepted(a, app=app, issuers=None):
        try:
            return check_client_assertion(app, a, {ep}, issuers=issuers or {}, now=now)
        except EntraReject as e:
            if VERBOSE:
                print(f"     rejected: AADSTS{e.code}")
            return None

    rs = {"alg": "RS256", "typ": "JWT", "x5t": b64url(tp["sha1"])}
    check("cert assertion RS256 x5t (base64url) accepted", accepted(assertion(rs)) == "cert")
    check("cert assertion RS256 x5t (standard base64, azure_identity) accepted",
          accepted(assertion(dict(rs, x5t=base64.b64encode(tp["sha1"]).decode()))) == "cert")
    check("cert assertion PS256 x5t#S256 (MSAL) accepted",
          accepted(assertion({"alg": "PS256", "typ": "JWT", "x5t#S256": b64url(tp["sha256"])}))
          == "cert")
    check("cert assertion for another endpoint rejected",
          accepted(assertion(rs, aud="https://login.microsoftonline.com/x/oauth2/v2.0/token")) is None)
    check("cert assertion expired rejected", accepted(assertion(rs, exp=now - 1)) is None)
    check("cert assertion valid for an hour rejected", accepted(assertion(rs, exp=now + 3600)) is None)
    check("cert assertion signed by another key rejected",
          accepted(assertion(rs, signer=other)) is None)
    check("cert assertion of an unknown certificate rejected",
          accepted(assertion(dict(rs, x5t=b64url(b"x" * 20)))) is None)

    fed = azure_app(AZURE_WI_APP, federated=[{"issuer": WI_ISSUER, "subject": WI_SUBJECT,
                                              "audience": WI_AUDIENCE}])
    issuers = {WI_ISSUER: other.public_key()}

    def sa_token(**claims):
        base = {"aud": [WI_AUDIENCE], "iss": WI_ISSUER, "sub": WI_SUBJECT, "iat": now, "nbf": now,
                "exp": now + 3600}
        return sign_jwt(other, dict(base, **claims), header={"alg": "RS256", "kid": WI_KID})

    check("federated token accepted", accepted(sa_token(), fed, issuers) == "federated")
    check("federated token of another subject rejected",
          accepted(sa_token(sub="system:serviceaccount:x:y"), fed, issuers) is None)
    check("federated token expired rejected", accepted(sa_token(exp=now - 1), fed, issuers) is None)
    check("federated token of an unknown issuer rejected",
          accepted(sa_token(iss="https://elsewhere"), fed, issuers) is None)


# -- Control (/_azure/..., on the Google fake) ---------------------------------------


def azure_entra_control(req):
    """POST /_azure/entra: {"revoke_app": id or [ids], "restore_app": id or [ids],
    "expires_in": N, "apps": [{"client_id", "tenant"?, "secret"?, "certificate"? (PEM),
    "federated"?: [{"issuer", "subject", "audience"?}], "name"?}], "tenants": [id or
    {"id", "domain"?}], "users": [{"upn", "tenant"?, "refresh_token"?}], "revoke_tokens":
    true or client id, "federated_token": {"expires_in"?, "subject"?, "audience"?,
    "issuer"?}}. Answers the Entra state."""
    from cryptography import x509

    if not isinstance(req, dict):
        raise BadRequest("body must be a JSON object")
    allowed = {"revoke_app", "restore_app", "expires_in", "apps", "tenants", "users",
               "revoke_tokens", "federated_token", "guest"}
    unknown = set(req) - allowed
    if unknown:
        raise BadRequest(f"unknown keys {sorted(unknown)}")
    apps, tenants, users, tokens = [], [], [], {}
    for t in req.get("tenants") or []:
        t = t if isinstance(t, dict) else {"id": t}
        if not isinstance(t.get("id"), str) or not GUID_RE.match(t["id"]):
            raise BadRequest(f"tenant id {t.get('id')!r} is not a GUID")
        tid = t["id"].lower()
        tenants.append({"id": tid, "domain": str(t.get("domain") or f"tenant-{tid[:8]}.onmicrosoft.com"),
                        "name": str(t.get("name") or f"Tenant {tid[:8]}")})
    for a in req.get("apps") or []:
        if not isinstance(a, dict) or not GUID_RE.match(str(a.get("client_id", ""))):
            raise BadRequest("an app needs a GUID client_id")
        bad = set(a) - {"client_id", "tenant", "secret", "certificate", "federated", "name"}
        if bad:
            raise BadRequest(f"unknown app keys {sorted(bad)}")
        certs = []
        if a.get("certificate"):
            pem = a["certificate"].encode()
            try:
                certs = [cert_thumbprints(x509.load_pem_x509_certificate(
                    pem[pem.index(b"-----BEGIN CERTIFICATE-----"):]))]
            except ValueError as e:
                raise BadRequest(f"certificate: {e}")
        fed = []
        for f in a.get("federated") or []:
            if not isinstance(f, dict) or not f.get("issuer") or not f.get("subject"):
                raise BadRequest("a federated credential needs issuer and subject")
            fed.append({"issuer": f["issuer"], "subject": f["subject"],
                        "audience": f.get("audience") or WI_AUDIENCE})
        if not (a.get("secret") or certs or fed):
            raise BadRequest("an app needs a secret, a certificate or federated credentials")
        apps.append(azure_app(a["client_id"], tenant=a.get("tenant") or AZURE_TENANT,
                              name=a.get("name"), secrets_=[a["secret"]] if a.get("secret") else [],
                              certs=certs, federated=fed))
    for u in req.get("users") or []:
        if not isinstance(u, dict) or "@" not in str(u.get("upn", "")):
            raise BadRequest("a user needs a upn")
        users.append(azure_user(u["upn"], tenant=u.get("tenant") or AZURE_TENANT))
        tokens[u.get("refresh_token") or "1.AXkA" + b64url(secrets.token_bytes(48))] = {
            "upn": u["upn"], "client_id": None}

    def ids(v):
        return [str(x).lower() for x in (v if isinstance(v, list) else [v])] if v else []

    with STATE.lock:
        for t in tenants:
            STATE.azure_tenants[t["id"]] = t
        for a in apps:
            STATE.azure_apps[a["client_id"]] = a
        for u in users:
            STATE.azure_users[u["upn"]] = u
        STATE.azure_refresh_tokens.update(tokens)
        for g in req.get("guest") or []:
            # A multi-tenant app with a service principal in another tenant.
            app = STATE.azure_apps.get(str(g["client_id"]).lower())
            if app is None:
                raise BadRequest(f"no app {g['client_id']}")
            app.setdefault("guest_tenants", []).append(str(g["tenant"]).lower())
        for cid in ids(req.get("revoke_app")):
            if cid not in STATE.azure_apps:
                raise BadRequest(f"no app {cid}")
            STATE.azure_apps[cid]["revoked"] = True
        for cid in ids(req.get("restore_app")):
            if cid in STATE.azure_apps:
                STATE.azure_apps[cid]["revoked"] = False
        if req.get("expires_in") is not None:
            STATE.azure_expires_in = int(req["expires_in"])
        rt = req.get("revoke_tokens")
        if rt:
            for rec in STATE.azure_tokens.values():
                if rt is True or rec["client_id"] == str(rt).lower():
                    rec["revoked"] = True
    ft = req.get("federated_token")
    if ft is not None:
        if not isinstance(ft, dict):
            raise BadRequest("federated_token must be an object")
        write_federated_token(STATE.federated_token_file, issuer=ft.get("issuer") or WI_ISSUER,
                              subject=ft.get("subject") or WI_SUBJECT,
                              audience=ft.get("audience") or WI_AUDIENCE,
                              expires_in=int(ft.get("expires_in", 86400)))
    return azure_entra_state()


def azure_entra_state():
    with STATE.lock:
        return {"tenants": sorted(STATE.azure_tenants.values(), key=lambda t: t["id"]),
                "apps": [render_azure_app(a) for a in STATE.azure_apps.values()],
                "users": [dict(u, refresh_tokens=[t for t, r in STATE.azure_refresh_tokens.items()
                                                  if r["upn"] == u["upn"]])
                          for u in STATE.azure_users.values()],
                "expires_in": STATE.azure_expires_in}


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
    # Azure: Entra (the authority host: azure_identity refuses a non-https one) and
    # ARM, behind the kube fake's certificate.
    entra = TLSServer(("127.0.0.1", 0), EntraHandler, ctx)
    arm = TLSServer(("127.0.0.1", 0), ArmHandler, ctx)
    STATE.entra_url = f"https://127.0.0.1:{entra.server_address[1]}"
    STATE.arm_url = f"https://127.0.0.1:{arm.server_address[1]}"
    # The fake ARM is a cloud of its own (as a sovereign cloud's ARM is): its
    # root is a resource Entra issues tokens for, and an audience it accepts.
    AZURE_RESOURCES[STATE.arm_url] = STATE.arm_url + "/"
    azure_info = make_azure(state_dir)
    fleet = {"projects": bench_fleet(*args.gke_fleet) if args.gke_fleet else {}}
    if args.rm_page_size:
        fleet["rm_page_size"] = args.rm_page_size
    set_gke_fleet(fleet)

    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
               for s in (google, kube, kube_other, entra, arm)]
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
        "entra": STATE.entra_url,
        "arm": STATE.arm_url,
    })
    info.update(azure_info)
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
