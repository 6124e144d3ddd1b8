#!/usr/bin/env bash
# Benchmark of `fleetctx status` over 200 loopback clusters (GKE, 20 projects x 10
# clusters on the fake API server), each answering every call LATENCY_MS (default
# 50) late. Prints, from one run:
#   - the wall time of `fleetctx status` over all 200;
#   - the same command over the one cluster alone (the floor: what the slowest
#     single cluster costs);
#   - a sequential loop of `kubectl get --raw /version` through the same kubeconfig
#     (what a script over the contexts would take).
#
# Usage: bash bench/status.sh     (needs the harness: bash tests/harness/install.sh)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLEETCTX_VENV:-$repo/.venv}"
[[ -x "$venv/bin/python" ]] || { echo "bench: run tests/harness/install.sh first" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"

exec "$venv/bin/python" - "$repo" "${LATENCY_MS:-50}" "${CLUSTERS:-200}" <<'PY'
import json, os, subprocess, sys, tempfile, time, urllib.request

repo, latency, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
target = os.environ.get("CARGO_TARGET_DIR", f"{repo}/target")
fleetctx = f"{target}/release/fleetctx"
kubectl = f"{os.environ.get('FLEETCTX_VENV', repo + '/.venv')}/bin/kubectl"
work = tempfile.mkdtemp(prefix="fleetctx-bench-status-")
fakes = subprocess.Popen(
    [sys.executable, f"{repo}/tests/fakes/fakes.py", "--dir", f"{work}/fakes", "--no-moto"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
info = json.loads(fakes.stdout.readline())
google, host = info["google"], info["kube"].split("://", 1)[1]

def post(path, body):
    req = urllib.request.Request(google + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))

names = [f"c-{i:03d}" for i in range(count)]
post("/_gke/fleet", {"projects": {
    f"p-{p:02d}": {"clusters": [{"name": n, "endpoint": f"{host}/gke/{n}"}
                                for n in names[p * 10:(p + 1) * 10]]}
    for p in range((count + 9) // 10)}})
post("/_kube/clusters", {n: {"delay_ms": latency, "nodes": 3, "pods": 40} for n in names})

os.makedirs(f"{work}/home")
kubeconfig = f"{work}/kubeconfig"
env = {"PATH": os.environ["PATH"], "HOME": f"{work}/home", "XDG_CACHE_HOME": f"{work}/cache",
       "GOOGLE_APPLICATION_CREDENTIALS": info["sa_key"],
       "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER": google,
       "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER": google}
subprocess.run([fleetctx, "sync", "--gke-all-projects", "--no-eks", "--kubeconfig", kubeconfig, "-q"],
               env=env, check=True)
contexts = subprocess.run([kubectl, "--kubeconfig", kubeconfig, "config", "get-contexts", "-o", "name"],
                          env=env, capture_output=True, text=True, check=True).stdout.split()
assert len(contexts) == count, contexts

def timed(cmd, ok=(0,)):
    started = time.perf_counter()
    ran = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert ran.returncode in ok, ran.stderr
    return time.perf_counter() - started, ran

status = [fleetctx, "status", "--kubeconfig", kubeconfig, *os.environ.get("STATUS_ARGS", "").split()]
timed(status + ["--context", contexts[0]])   # warm the token cache
single, _ = min(timed(status + ["--context", contexts[0]]) for _ in range(3))
def cpu_of(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

fakes_cpu = cpu_of(fakes.pid)
whole, ran = min((timed(status + ["-o", "json"]) for _ in range(3)), key=lambda r: r[0])
fakes_cpu = (cpu_of(fakes.pid) - fakes_cpu) / 3
report = json.loads(ran.stdout)
healthy = sum(1 for r in report if r["state"] == "ok")
sequential = 0.0
for context in contexts:
    took, _ = timed([kubectl, "--kubeconfig", kubeconfig, "--context", context, "get", "--raw", "/version"])
    sequential += took
fakes.stdin.close()

print(f"\n{count} clusters on the loopback fake, {latency} ms per API call; best of 3 runs")
print(f"{'fleetctx status, all clusters':<44} {whole:7.2f} s   ({healthy} ok; 4 calls each; "
      f"the fake API server's own CPU: {fakes_cpu:.2f} s a run)")
print(f"{'fleetctx status, one cluster alone':<44} {single:7.2f} s   (all / one: {whole / single:.1f}x)")
print(f"{'kubectl get --raw /version, one by one':<44} {sequential:7.2f} s   "
      f"(that / fleetctx status: {sequential / whole:.0f}x)")
PY
