#!/usr/bin/env bash
# The main job: set up what is missing (scripts/setup.sh), then validate the embedded allinone
# inventory. Later steps (boot the topology with the harness, install Kubernetes onto it) are added
# here as they land; see README "Status".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
VENV=${KHA_VENV:-$ROOT/.venv}
INVENTORY="$ROOT/scenarios/inventories/hosts.allinone.hostname.ini"
"$VENV/bin/kha" inventory check "$INVENTORY"
