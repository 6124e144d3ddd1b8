#!/usr/bin/env bash
# Benchmark of `fleetctx sync` against a fake fleet with injected latency:
# 200 GKE projects of 3 clusters (Resource Manager paged), 2 AWS profiles
# across every commercial EKS region (34) with clusters in 6 of them, and an IAM
# Identity Center session of SSO_ACCOUNTS (default 20) accounts x 2 permission
# sets, each across the same regions; every API call takes LATENCY_MS (default
# 50) on the fakes.
# Prints wall time, the sum of the per-call latencies fleetctx measured (what a
# tool making the same calls one after another would take at least), their
# ratio, and peak memory.
#
# Usage: bash bench/sync.sh     (needs the harness: bash tests/harness/install.sh)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLEETCTX_VENV:-$repo/.venv}"
[[ -x "$venv/bin/python" ]] || { echo "bench: run tests/harness/install.sh first" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "bench: needs GNU time (apt-get install time)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"

exec "$venv/bin/python" - "$repo" "${LATENCY_MS:-50}" "${PROJECTS:-200}" "${SSO_ACCOUNTS:-20}" <<'PY'
import datetime, hashlib, json, os, re, subprocess, sys, tempfile, time, urllib.request

repo, latency, projects, sso_accounts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
work = tempfile.mkdtemp(prefix="fleetctx-bench-")
fakes = subprocess.Popen(
    [sys.executable, f"{repo}/tests/fakes/fakes.py", "--dir", f"{work}/fakes",
     "--gke-fleet", f"{projects}:3", "--rm-page-size", "50", "--aws-key", "AKIAFLEETCTXBENCH001:bench"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
info = json.loads(fakes.stdout.readline())
google = info["google"]

def post(path, body):
    req = urllib.request.Request(google + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))

regions = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1", "sa-east-1"]
post("/_eks/create", {"clusters": [
    {"account": "123456789012", "region": r, "name": f"{r}-{i}"} for r in regions for i in range(3)]})
# IAM Identity Center: accounts 200000000000.. with two permission sets each, a
# cluster in us-east-1 of every other account, and the aws CLI's cached login.
sso = [str(200000000000 + i) for i in range(sso_accounts)]
post("/_eks/create", {"clusters": [
    {"account": a, "region": "us-east-1", "name": f"sso-{a}"} for a in sso[::2]]})
post("/_sso/setup", {"access_token": "bench-sso", "expires_in": 3600, "page_size": 20,
                     "accounts": [{"id": a, "name": f"team-{i}", "roles": ["Admin", "ReadOnly"]}
                                  for i, a in enumerate(sso)]})
post("/_config", {"api_delay_ms": latency})

home = f"{work}/home"
os.makedirs(home)
with open(f"{work}/config", "w") as f:
    f.write("[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\n")
os.makedirs(f"{home}/.aws/sso/cache")
later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
with open(f"{home}/.aws/sso/cache/{hashlib.sha1(b'corp').hexdigest()}.json", "w") as f:
    json.dump({"startUrl": "https://corp.awsapps.com/start", "region": "us-east-1",
               "accessToken": "bench-sso", "expiresAt": later}, f)
with open(f"{work}/credentials", "w") as f:
    for p in ("team-a", "team-b"):
        f.write(f"[{p}]\naws_access_key_id = AKIAFLEETCTXBENCH001\naws_secret_access_key = bench\n\n")
env = {
    "PATH": os.environ["PATH"], "HOME": home, "XDG_CACHE_HOME": f"{work}/cache",
    "AWS_SHARED_CREDENTIALS_FILE": f"{work}/credentials", "AWS_CONFIG_FILE": f"{work}/config",
    "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": info["moto"],
    "AWS_ENDPOINT_URL_SSO": f"{google}/sso", "AWS_ENDPOINT_URL_SSO_OIDC": f"{google}/oidc",
    "GOOGLE_APPLICATION_CREDENTIALS": info["sa_key"],
    "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER": google,
    "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER": google,
}
args = [f"{repo}/target/release/fleetctx", "sync", "--gke-all-projects", "--eks-profile", "team-a",
        "--eks-profile", "team-b", "--eks-sso-session", "corp",
        "--kubeconfig", f"{work}/kubeconfig", "-v"]
# Warm the GKE token cache so the run times discovery, not one OAuth round trip.
subprocess.run([args[0], "token", "gke"], env=env, stdout=subprocess.DEVNULL, check=True)

started = time.perf_counter()
# /usr/bin/time reports the sync process's own peak RSS (KiB) as its last line.
run = subprocess.run(["/usr/bin/time", "-f", "%M", *args], env=env, capture_output=True, text=True)
wall = time.perf_counter() - started
peak_kib = int(run.stderr.strip().splitlines()[-1])
fakes.stdin.close()
if run.returncode != 0:
    sys.exit(f"sync failed ({run.returncode}):\n{run.stderr[-3000:]}")
calls = [int(m) for m in re.findall(r"\((\d+) ms\)$", run.stderr, re.M)]
summary = [l for l in run.stderr.splitlines() if "scanned" in l or "wrote" in l]
sequential = sum(calls) / 1000
print("\n".join(summary))
print(f"\nfleet: {projects} GKE projects x 3 clusters, 2 AWS profiles x 34 regions "
      f"({len(regions) * 3} clusters each), an SSO session of {sso_accounts} accounts x 2 "
      f"roles x 34 regions, {latency} ms per API call")
print(f"{'API calls':<34} {len(calls)}")
print(f"{'wall time':<34} {wall:.2f} s")
print(f"{'sum of per-call latencies':<34} {sequential:.2f} s   (a sequential tool's floor)")
print(f"{'speed-up vs sequential':<34} {sequential / wall:.1f}x")
print(f"{'peak memory (max RSS)':<34} {peak_kib / 1024:.1f} MiB")
PY
