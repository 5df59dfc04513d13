#!/usr/bin/env bash
# The test command: set up what is missing (scripts/setup.sh), then every CI tier, the developers' front
# door: lint, type, unit, integration through tox, then the test matrix's pr tier: the e2e tier on allinone
# and m-master (what `tox -e allinone`, `tox -e m-master` run) with each LB mode and Debian image between
# them, CI's share of the fault catalogue on an installed m-master (`tox -e failover-pr`; the whole
# catalogue is `tox -e failover`). allinone on a qemu VM (`tox -e allinone-qemu`) is in the nightly tier.
# Extra arguments go to pytest.
# Integration and e2e tests use real daemons and topologies on this machine (sshd, etcd, haproxy,
# keepalived, libvirtd); a tier fails, never skips, when something it needs is missing (KHA_NO_SKIP=1).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
VENV=${KHA_VENV:-$ROOT/.venv}
cd "$ROOT"
export KHA_NO_SKIP=1
# Every failing test that had an installed topology leaves a bug report here (kha report show / kha replay).
export KHA_REPORT_DIR=${KHA_REPORT_DIR:-$ROOT/kha-reports}
reports() {
  if compgen -G "$KHA_REPORT_DIR/*.tar.gz" >/dev/null; then
    echo "kha bug reports of failed tests in $KHA_REPORT_DIR:"; ls -l "$KHA_REPORT_DIR"
  fi
}
trap reports EXIT
# One tox call per group so the first failing group stops the run (tox itself goes on to the next env).
"$VENV/bin/tox" run -e lint,type -- "$@"
"$VENV/bin/tox" run -e unit,integration -- "$@"
# The e2e part is the test matrix's pr tier (scenarios/matrix.toml; `kha matrix list --tier pr`): each cell
# is the pytest command of one tox env above with the cell's image and load balancer (--kha-os, --kha-lb),
# two e2e cells at a time, the failover cell alone; a failed cell prints its log's tail.
"$VENV/bin/kha" matrix run --tier pr --jobs 2 --out "$ROOT/matrix-results" -- "$@"
