#!/usr/bin/env bash
# Benchmark of `fleetctx token`, timing whole commands as kubectl runs them:
#   - the cache-hit path for EKS and GKE,
#   - a cold EKS token with static credentials (--no-cache: sign locally, no network),
#   - `aws eks get-token` for the same cluster (what `aws eks update-kubeconfig` writes),
#   - `gke-gcloud-auth-plugin` with its cache warm, when it is installed,
#   - the AKS cache-hit path through the Azure CLI's login, against the real
#     `az account get-access-token` for the same token (its MSAL cache warm;
#     kubelogin's azurecli mode runs exactly that, and kubelogin itself cannot be
#     installed from the registries this runs with).
# All in one run, so the ratios compare like with like. Prints medians and ratios.
#
# Usage: bash bench/token.sh     (needs the harness: bash tests/harness/install.sh)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLEETCTX_VENV:-$repo/.venv}"
runs="${RUNS:-300}"

if ! command -v hyperfine >/dev/null; then
    if [[ "$(id -u)" == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
    else
        echo "bench: hyperfine is required (apt-get install hyperfine)" >&2
        exit 1
    fi
fi
[[ -x "$venv/bin/aws" && -x "$venv/bin/az" ]] || { echo "bench: run tests/harness/install.sh first" >&2; exit 1; }

cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$repo/target}/release/fleetctx"

work="$(mktemp -d)"
cleanup() { [[ -n "${fakes_pid:-}" ]] && kill "$fakes_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# A hermetic identity: static keys for AWS, a loopback token endpoint for Google.
export HOME="$work/home" XDG_CACHE_HOME="$work/cache" AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE="$work/aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/aws-credentials"
export AWS_ACCESS_KEY_ID=AKIAFLEETCTXBENCH001 AWS_SECRET_ACCESS_KEY=bench/secret/key
mkdir -p "$HOME"
mkfifo "$work/fakes.out"
"$venv/bin/python" "$repo/tests/fakes/fakes.py" --dir "$work/fakes" --no-moto --no-stdin-watch >"$work/fakes.out" &
fakes_pid=$!
read -r fakes_line <"$work/fakes.out"
field() { "$venv/bin/python" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$fakes_line" "$1"; }
GOOGLE_APPLICATION_CREDENTIALS="$(field sa_key)"
export GOOGLE_APPLICATION_CREDENTIALS

# The Azure CLI, logged in to the loopback Entra ID as a service principal.
aks_scope=6dae42f8-4368-4678-94ff-3960e28e3630/.default
export AZURE_CONFIG_DIR="$work/azure" AZURE_CORE_COLLECT_TELEMETRY=false AZURE_CORE_INSTANCE_DISCOVERY=false
export SSL_CERT_FILE="$(field ca_file)" REQUESTS_CA_BUNDLE="$(field ca_file)"
export AZURE_AUTHORITY_HOST="$(field entra)" FLEETCTX_ARM_ENDPOINT="$(field arm)"
az="$venv/bin/az"
# `token aks --login azurecli` runs `az` from PATH, as kubelogin does.
PATH="$(dirname "$(readlink -f "$az")"):$PATH"
"$az" cloud register --name FleetFake --skip-endpoint-discovery --endpoint-active-directory "$(field entra)" \
    --endpoint-resource-manager "$(field arm)/" --endpoint-active-directory-resource-id https://management.azure.com/ >/dev/null
"$az" cloud set --name FleetFake >/dev/null
"$az" login --service-principal -u "$(field azure_client_id)" -p "$(field azure_client_secret)" \
    --tenant "$(field azure_tenant)" --allow-no-subscriptions >/dev/null

eks=(token eks --cluster prod --region eu-west-1)
# A kubeconfig of 100 contexts for the completion case.
"$venv/bin/python" - "$HOME/fleet.yaml" <<'KUBECONFIG'
import sys
names = [f"gke_project-{i:03}_europe-west1_cluster" for i in range(100)]
with open(sys.argv[1], "w") as f:
    f.write("apiVersion: v1\nkind: Config\ncontexts:\n")
    f.writelines(f"- name: {n}\n  context: {{cluster: {n}, user: {n}}}\n" for n in names)
KUBECONFIG
"$bin" "${eks[@]}" >/dev/null   # warm both caches
"$bin" token gke >/dev/null
"$bin" token aks >/dev/null
"$az" account get-access-token --scope "$aks_scope" -o json >/dev/null

cases=(
    -n "fleetctx token eks (cache hit)" "$bin ${eks[*]}"
    -n "fleetctx token gke (cache hit)" "$bin token gke"
    -n "fleetctx token aks (cache hit, Azure CLI login)" "$bin token aks"
    -n "fleetctx token eks --no-cache (cold, static keys)" "$bin ${eks[*]} --no-cache"
    -n "completion: fleetctx list <TAB> (100 contexts, via env)" \
        "env FLEETCTX_COMPLETE=fish KUBECONFIG=$HOME/fleet.yaml $bin -- fleetctx list gke_project-04"
)
hyperfine -N --style basic --warmup 20 --runs "$runs" --export-json "$work/fleetctx.json" "${cases[@]}" >&2

slow=(-n "aws eks get-token" "$venv/bin/aws eks get-token --cluster-name prod --region eu-west-1 --output json"
    -n "az account get-access-token (token cached)" "$az account get-access-token --scope $aks_scope -o json")
if command -v gke-gcloud-auth-plugin >/dev/null; then
    # Its cache, warm: the file it keeps next to the kubeconfig after a refresh,
    # valid for the kubeconfig's current-context.
    mkdir -p "$HOME/.kube"
    printf 'apiVersion: v1\nkind: Config\ncurrent-context: bench\ncontexts:\n- name: bench\n  context: {cluster: bench, user: bench}\nclusters:\n- name: bench\n  cluster: {server: "https://127.0.0.1:1"}\nusers:\n- name: bench\n  user: {token: unused}\n' >"$HOME/.kube/config"
    printf '{"current_context":"bench","access_token":"ya29.bench","token_expiry":"%s"}' \
        "$(date -u -d '+50 min' +%Y-%m-%dT%H:%M:%SZ)" >"$HOME/.kube/gke_gcloud_auth_plugin_cache"
    gke-gcloud-auth-plugin >/dev/null
    slow+=(-n "gke-gcloud-auth-plugin (cache warm)" "gke-gcloud-auth-plugin")
else
    echo "bench: gke-gcloud-auth-plugin is not installed; skipping it" >&2
fi
hyperfine -N --style basic --warmup 1 --runs "${SLOW_RUNS:-10}" --export-json "$work/others.json" "${slow[@]}" >&2

"$venv/bin/python" - "$work/fleetctx.json" "$work/others.json" <<'PY'
import json, sys
rows = [r for f in sys.argv[1:] for r in json.load(open(f))["results"]]
med = {r["command"]: r["median"] * 1000 for r in rows}
aws = med["aws eks get-token"]
print(f"\n{'command':<52} {'median':>10} {'vs aws eks get-token':>22}")
for name, ms in med.items():
    print(f"{name:<52} {ms:>8.2f}ms {aws / ms:>20.0f}x")
az = med["az account get-access-token (token cached)"]
aks = med["fleetctx token aks (cache hit, Azure CLI login)"]
print(f"\n{'fleetctx token aks hit vs az account get-access-token':<52} {az / aks:>10.0f}x")
PY

# The floor: a process that starts and reads one small file, `cat` of the very
# cache entry a hit reads. Runs paired and alternated (fleetctx, cat, fleetctx,
# cat, ...), so both see the same machine; the ratio is the median of the pairs'.
paired() { # KIND ARGS...: the hit of `fleetctx ARGS` against `cat` of its KIND entry
    local kind="$1"; shift
    "$venv/bin/python" - "$bin" "$(ls -t "$XDG_CACHE_HOME"/fleetctx/"$kind"-*.json | head -1)" "${PAIRS:-1000}" "$kind" "$@" <<'PY'
import os, statistics, sys, time
bin_, entry, pairs, kind, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
hit, cat = [bin_, *args], ["/bin/cat", entry]
null = os.open(os.devnull, os.O_WRONLY)

def once(cmd):
    started = time.perf_counter_ns()
    pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null, 1)])
    _, status = os.waitpid(pid, 0)
    assert status == 0, cmd
    return time.perf_counter_ns() - started

for _ in range(50):
    once(hit), once(cat)
times = [(once(hit), once(cat)) for _ in range(pairs)]
ms = lambda ns: statistics.median(ns) / 1e6
ratio = statistics.median(h / c for h, c in times)
print(f"\n{kind + ' cache hit vs the floor (paired, ' + str(pairs) + ' pairs)':<52} "
      f"hit {ms([h for h, _ in times]):.2f} ms, cat {ms([c for _, c in times]):.2f} ms: "
      f"{ratio:.2f}x   (target: at most 1.4x)")
PY
}
paired eks "${eks[@]}"
paired aks token aks
