#!/usr/bin/env bash
# Benchmark of `fleetctx sync` against a fake fleet with injected latency:
# 200 GKE projects of 3 clusters (Resource Manager paged), 2 AWS profiles
# across every commercial EKS region (34) with clusters in 6 of them, and an IAM
# Identity Center session of SSO_ACCOUNTS (default 20) accounts x 2 permission
# sets, each across the same regions; every API call takes LATENCY_MS (default
# 50) on the fakes.
# Prints wall time, the calls times the injected latency (what a tool making the
# same calls one after another would take at least), their ratio, and peak memory.
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
target = os.environ.get("CARGO_TARGET_DIR", f"{repo}/target")
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
# PROJECTS=0 skips this part.
if projects > 0:
    args = [f"{target}/release/fleetctx", "sync", "--gke-all-projects", "--eks-profile", "team-a",
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
    # A tool making the same calls one after another waits the injected latency
    # for each at least (the measured per-call times also hold the fakes' own
    # queueing under load, which a sequential tool would not see).
    sequential = len(calls) * latency / 1000
    print("\n".join(summary))
    print(f"\nfleet: {projects} GKE projects x 3 clusters, 2 AWS profiles x 34 regions "
          f"({len(regions) * 3} clusters each), an SSO session of {sso_accounts} accounts x 2 "
          f"roles x 34 regions, {latency} ms per API call")
    print(f"{'API calls':<34} {len(calls)}")
    print(f"{'wall time':<34} {wall:.2f} s")
    print(f"{'calls x injected latency':<34} {sequential:.2f} s   (a sequential tool's floor)")
    print(f"{'speed-up vs sequential':<34} {sequential / wall:.1f}x")
    print(f"{'peak memory (max RSS)':<34} {peak_kib / 1024:.1f} MiB")
else:
    fakes.stdin.close()

# --- Fleet scale ---------------------------------------------------------------
# 2,000 GKE projects over 40 Resource Manager pages: 10,000 clusters in 200 of
# them, 5% answering 403, 20 answering 429 twice before they succeed; plus the
# SSO session above. The critical path is the sequential page chain plus one list.
fleet_projects = int(os.environ.get("FLEET_PROJECTS", "2000"))
if fleet_projects == 0:
    sys.exit(0)
work2 = tempfile.mkdtemp(prefix="fleetctx-bench-fleet-")
fakes = subprocess.Popen(
    [sys.executable, f"{repo}/tests/fakes/fakes.py", "--dir", f"{work2}/fakes",
     "--aws-key", "AKIAFLEETCTXBENCH001:bench"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
info = json.loads(fakes.stdout.readline())
google = info["google"]
page_size = max(1, fleet_projects // 40)
fleet = {}
with_clusters = fleet_projects // 10
for i in range(fleet_projects):
    p = {}
    if i < with_clusters:
        p["clusters"] = [{"name": f"c-{j}", "location": "europe-west1"} for j in range(50)]
    elif i % 20 == 0:
        p["error"] = "PERMISSION_DENIED"
    elif i % 20 == 1 and i < with_clusters + 400:
        p["error"], p["error_count"] = 429, 2
    fleet[f"fleet-{i:04d}"] = p
post("/_gke/fleet", {"rm_page_size": page_size, "projects": fleet})
post("/_sso/setup", {"access_token": "bench-sso", "expires_in": 3600, "page_size": 20,
                     "accounts": [{"id": a, "name": f"team-{i}", "roles": ["Admin", "ReadOnly"]}
                                  for i, a in enumerate(sso)]})
post("/_eks/create", {"clusters": [
    {"account": a, "region": "us-east-1", "name": f"sso-{a}"} for a in sso[::2]]})
post("/_config", {"api_delay_ms": latency})
env.update({
    "XDG_CACHE_HOME": f"{work2}/cache", "AWS_ENDPOINT_URL": info["moto"],
    "AWS_ENDPOINT_URL_SSO": f"{google}/sso", "AWS_ENDPOINT_URL_SSO_OIDC": f"{google}/oidc",
    "GOOGLE_APPLICATION_CREDENTIALS": info["sa_key"],
    "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER": google,
    "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER": google,
})
kubeconfig = f"{work2}/kubeconfig"
args = [f"{target}/release/fleetctx", "sync", "--gke-all-projects",
        "--eks-sso-session", "corp", "--eks-region", "us-east-1",
        "--kubeconfig", kubeconfig, "-v", "-o", "json"]
subprocess.run([args[0], "token", "gke"], env=env, stdout=subprocess.DEVNULL, check=True)

def cpu_of(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

fakes_cpu = cpu_of(fakes.pid)
started = time.perf_counter()
run = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", *args], env=env, capture_output=True, text=True)
wall = time.perf_counter() - started
fakes_cpu = cpu_of(fakes.pid) - fakes_cpu
fakes.stdin.close()
if run.returncode not in (0, 3):
    sys.exit(f"fleet sync failed ({run.returncode}):\n{run.stderr[-3000:]}")
user_s, sys_s, peak_kib = run.stderr.strip().splitlines()[-1].split()
cpu, peak_kib = float(user_s) + float(sys_s), int(peak_kib)
report = json.loads(run.stdout)
if os.environ.get("BENCH_STDERR"): open(os.environ["BENCH_STDERR"], "w").write(run.stderr)
calls = sorted(int(m) for m in re.findall(r"\((\d+) ms\)$", run.stderr, re.M))
outcomes = {}
for source in report["sources"]:
    outcomes[source["outcome"]] = outcomes.get(source["outcome"], 0) + 1
busy = {f"gke/{name}" for name, p in fleet.items() if p.get("error") == 429}
busy_failed = [s["source"] for s in report["sources"]
               if s["outcome"] == "failed" and s["source"] in busy]
pages = -(-fleet_projects // page_size)
critical = (pages + 1) * latency / 1000
clusters = sum(s["clusters"] for s in report["sources"])

def kubectl_ms(path, context=None, n=7):
    cmd = [f"{os.environ.get('FLEETCTX_VENV', repo + '/.venv')}/bin/kubectl", "config", "view",
           "--minify", "--kubeconfig", path]
    if context:
        cmd += ["--context", context]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return sorted(times)[n // 2] * 1000

def completion_ms(n=7):
    cmd = [args[0], "--", "fleetctx", "kubeconfig", "gke_fleet-0001_"]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, env={**env, "FLEETCTX_COMPLETE": "fish", "KUBECONFIG": kubeconfig},
                       stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return sorted(times)[n // 2] * 1000

indexed_ms = completion_ms()
for name in os.listdir(f"{work2}/cache/fleetctx/names"):
    os.remove(f"{work2}/cache/fleetctx/names/{name}")
parsed_ms = completion_ms(1)

context = "gke_fleet-0000_europe-west1_c-0"
alone = subprocess.run([args[0], "kubeconfig", context, "--kubeconfig", kubeconfig], env=env,
                       capture_output=True, text=True, check=True).stdout.strip()
big_ms, alone_ms = kubectl_ms(kubeconfig, context), kubectl_ms(alone)
print(f"\nfleet scale: {fleet_projects} GKE projects over {pages} pages ({with_clusters} with "
      f"50 clusters, 5% answering 403, 20 answering 429 twice), an SSO session of "
      f"{len(sso)} accounts x 2 roles in us-east-1, {latency} ms per API call")
print(f"{'clusters written':<34} {clusters}")
print(f"{'sources':<34} " + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())))
print(f"{'throttled sources that failed':<34} {len(busy_failed)} of {len(busy)}   (target: 0)")
print(f"{'API calls':<34} {len(calls)}")
print(f"{'wall time':<34} {wall:.2f} s")
print(f"{'  of which discovery':<34} {report['timings']['discover_ms'] / 1000:.2f} s   "
      f"(CPU: fleetctx {cpu:.2f} s, the fakes {fakes_cpu:.2f} s; a call's median {calls[len(calls) // 2]} ms, "
      f"p99 {calls[len(calls) * 99 // 100]} ms, against {latency} ms injected)")
print(f"{'critical path':<34} {critical:.2f} s   (page chain + one list)")
print(f"{'wall / critical path':<34} {wall / critical:.2f}x   (target: at most 2x)")
print(f"{'peak memory (max RSS)':<34} {peak_kib / 1024:.1f} MiB   (target: under 200 MB)")
print(f"{'merge and write':<34} {report['timings']['merge_write_ms']} ms   (target: under 1 s)")
print(f"{'stderr lines':<34} {len(run.stderr.splitlines()) - len(calls)}   (without -v's per-call lines)")
print(f"{'completion of a context (TAB)':<34} {indexed_ms:.1f} ms with the names index sync leaves, "
      f"{parsed_ms:.0f} ms parsing the fleet file")
print(f"{'kubectl config view --minify':<34} {big_ms:.0f} ms on the fleet file, "
      f"{alone_ms:.0f} ms on `fleetctx kubeconfig` ({big_ms / alone_ms:.1f}x)")
PY
