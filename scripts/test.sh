#!/usr/bin/env bash
# The test command: set up what is missing (scripts/setup.sh), then every CI tier through tox, the
# developers' front door: lint, type, unit, integration, then the e2e tier on allinone and m-master
# (`tox -e allinone`, `tox -e m-master`), CI's share of the fault catalogue on an installed m-master
# (`tox -e failover-pr`; the whole catalogue is `tox -e failover`), and allinone on a qemu VM
# (`tox -e allinone-qemu`).
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
for scenario in allinone m-master failover-pr allinone-qemu; do
  "$VENV/bin/tox" run -e "$scenario" -- "$@"
done
