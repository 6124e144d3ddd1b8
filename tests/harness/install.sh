#!/usr/bin/env bash
# Installs the third-party parts fleetctx's integration tests drive:
#   - a Python venv (default <repo>/.venv, override with FLEETCTX_VENV) holding
#     kubectl, moto, the aws CLI and cryptography (see requirements.txt);
#   - the Azure CLI in a venv of its own (default <repo>/.venv-az, override with
#     FLEETCTX_AZ_VENV: its pins must not move the other's), linked as
#     <venv>/bin/az;
#   - Debian packages faketime, tmux, zsh, fish, openssl (apt-get, root only).
# Idempotent and non-interactive: safe to run before every test run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${FLEETCTX_VENV:-$repo/.venv}"
reqs="$here/requirements.txt"

log() { printf 'install.sh: %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------
# package name -> a command it provides (to tell whether it is there)
declare -A pkg_cmd=([faketime]=faketime [tmux]=tmux [zsh]=zsh [fish]=fish [openssl]=openssl)
missing=()
for pkg in faketime tmux zsh fish openssl; do
    if ! command -v "${pkg_cmd[$pkg]}" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        log "missing Debian packages (not root or no apt-get, skipping): ${missing[*]}"
    fi
fi

# --- Python venv -------------------------------------------------------------
if [[ ! -x "$venv/bin/python" ]]; then
    log "creating venv at $venv"
    python3 -m venv "$venv"
fi
# Skip pip when every requirement is already satisfied (fast re-runs).
if ! "$venv/bin/python" - "$reqs" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    req = Requirement(line)
    try:
        have = version(req.name)
    except PackageNotFoundError:
        sys.exit(1)
    if not req.specifier.contains(have, prereleases=True):
        sys.exit(1)
    for extra in req.extras:  # moto[server] needs flask and friends
        if extra == "server":
            import flask, flask_cors  # noqa: F401
sys.exit(0)
PY
then
    log "pip install -r requirements.txt"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs"
fi

# --- The Azure CLI -------------------------------------------------------------
az_venv="${FLEETCTX_AZ_VENV:-$repo/.venv-az}"
if [[ ! -x "$az_venv/bin/az" ]]; then
    log "pip install azure-cli (its own venv at $az_venv)"
    python3 -m venv "$az_venv"
    "$az_venv/bin/python" -m pip install -q --disable-pip-version-check "azure-cli==2.91.0"
fi
ln -sfn "$az_venv/bin/az" "$venv/bin/az"

# --- Verify --------------------------------------------------------------------
fail=0
# Whole outputs first, then the first line: `| head -n1` under pipefail can kill
# the writer with SIGPIPE and make a working tool look broken.
kubectl_out="$("$venv/bin/kubectl" version --client 2>/dev/null)" || { log "kubectl broken"; fail=1; }
kubectl_v="$(printf '%s\n' "${kubectl_out:-}" | sed -n '1s/^Client Version: //p')"
aws_v="$("$venv/bin/aws" --version 2>&1 | awk '{print $1}')" || { log "aws CLI broken"; fail=1; }
az_v="$(AZURE_CONFIG_DIR="$(mktemp -d)" AZURE_CORE_COLLECT_TELEMETRY=false "$venv/bin/az" version --query '"azure-cli"' -o tsv 2>/dev/null)" || { log "az broken"; fail=1; }
moto_v="$("$venv/bin/python" -c 'import moto, moto.server, cryptography; print(moto.__version__)' 2>/dev/null)" || { log "moto[server] import failed"; fail=1; }
[[ -x "$venv/bin/moto_server" ]] || { log "moto_server missing"; fail=1; }
if command -v faketime >/dev/null 2>&1; then ft=yes; else ft=no; log "faketime missing"; fail=1; fi
shells=""
for s in tmux zsh fish openssl; do command -v "$s" >/dev/null 2>&1 && shells+="$s " || shells+="!$s "; done

echo "harness: venv=$venv kubectl=${kubectl_v:-?} ${aws_v:-aws?} az=${az_v:-?} moto=${moto_v:-?} faketime=$ft tools: ${shells% }"
exit "$fail"
