#!/usr/bin/env bash
# The main job: set up what is missing (scripts/setup.sh), then boot the embedded allinone topology
# with the harness (isolated: its network lives in a namespace of its own) and install onto it over
# SSH with the installer. Today that is the PKI, etcd and the node-local load balancer; the
# Kubernetes phases join as they land (README "Status"). Re-running reuses a running cluster and
# changes nothing that is already right. `kha down --name allinone` removes it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
KHA="${KHA_VENV:-$ROOT/.venv}/bin/kha"
INVENTORY="$ROOT/scenarios/inventories/hosts.allinone.ip.ini"
STATE="${XDG_CACHE_HOME:-$HOME/.cache}/kha/installs/allinone"

"$KHA" inventory check "$INVENTORY"
"$KHA" image build debian-12
if ! "$KHA" status --name allinone >/dev/null 2>&1; then
  "$KHA" up allinone --isolated --name allinone
fi
CLUSTER_DIR=$("$KHA" status --name allinone >/dev/null && echo "${XDG_CACHE_HOME:-$HOME/.cache}/kha/clusters/allinone")
"$KHA" install -i "$INVENTORY" --state "$STATE" --ssh-config "$CLUSTER_DIR/ssh_config" \
  --known-hosts "$CLUSTER_DIR/known_hosts" --only pki,connect,etcd,loadbalancer
"$KHA" status --name allinone
echo "reach the node: $KHA ssh --name allinone 10.56.56.11 -- etcdctl version"
