#!/usr/bin/env bash
# The main job: set up what is missing (scripts/setup.sh), build (or reuse) the Debian 12 base image
# and the offline Kubernetes 1.20.2 bundle, boot the embedded allinone topology with the harness
# (isolated: its network lives in a namespace of its own), and install Kubernetes onto it over SSH
# with the installer: PKI, etcd, the node-local load balancer, kubeadm, CNI. Re-running reuses the
# running node and changes nothing that is already right. `kha down --name allinone` removes it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
KHA="${KHA_VENV:-$ROOT/.venv}/bin/kha"
PY="${KHA_VENV:-$ROOT/.venv}/bin/python"
INVENTORY="$ROOT/scenarios/inventories/hosts.allinone.ip.ini"
CACHE="${KHA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kha}"
STATE="$CACHE/installs/allinone"

"$KHA" inventory check "$INVENTORY"
"$KHA" image build debian-12
"$KHA" bundle build
BUNDLE=$("$PY" -c 'import images.bundle as b; x = b.get(); print(x.path if x else "")')
if ! "$KHA" status --name allinone >/dev/null 2>&1; then
  "$KHA" up allinone --isolated --name allinone
fi
CLUSTER_DIR="$CACHE/clusters/allinone"
"$KHA" install -i "$INVENTORY" --state "$STATE" --ssh-config "$CLUSTER_DIR/ssh_config" \
  --known-hosts "$CLUSTER_DIR/known_hosts" --bundle "$BUNDLE"
"$KHA" ssh --name allinone 10.56.56.11 -- kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes,pods -A
echo "the cluster keeps running: $KHA ssh --name allinone 10.56.56.11; remove it with: $KHA down --name allinone"
