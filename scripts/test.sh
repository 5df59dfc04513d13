#!/usr/bin/env bash
# The test command: set up what is missing (scripts/setup.sh), then lint, type-check and run the
# unit and integration tiers, then the e2e tier on allinone and m-master. Extra arguments go to pytest.
# Integration tests use real daemons on this machine (sshd, etcd, haproxy, keepalived, libvirtd);
# a tier fails, never skips, when something it needs is missing (KHA_NO_SKIP=1).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
VENV=${KHA_VENV:-$ROOT/.venv}
cd "$ROOT"
export KHA_NO_SKIP=1
echo "== ruff"; "$VENV/bin/ruff" check .
echo "== mypy"; "$VENV/bin/mypy"
echo "== pytest (unit + integration)"
"$VENV/bin/python" -m pytest -m "not e2e" -n 2 --durations=15 "$@" tests
# e2e: whole topologies installed from the offline bundle (the same as `tox -e allinone` / `-e m-master`).
for scenario in allinone m-master; do
  echo "== pytest e2e: $scenario"
  "$VENV/bin/python" -m pytest -m e2e --kha-scenario "$scenario" "$@" tests/e2e
done
