#!/usr/bin/env bash
# Stop Ray on every node of the cluster (workers first, then the head), over ssh or directly
# when a host is this machine. Note that `ray stop` ends every Ray process of a host. Settings:
# scripts/env.sh --help.
#
# Usage: scripts/ray_stop.sh [--force] [--help]

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
force=""
case "${1:-}" in
    -h | --help) tesp_usage "$0"; exit 0 ;;
    --force) force=" --force" ;;
    "") ;;
    *) tesp_die "unexpected argument '$1' (see --help)" ;;
esac
tesp_load_settings
tesp_require TESP_HEAD_HOST

status=0
stopped=" "
for host in $TESP_WORKER_HOSTS "$TESP_HEAD_HOST"; do
    key="$host"
    tesp_is_local "$host" && key="local"
    [[ "$stopped" == *" $key "* ]] && continue  # one `ray stop` per machine
    stopped+="$key "
    echo "stopping Ray on $host"
    tesp_on "$host" "$(tesp_activate); ray stop$force 2>&1 | tail -n 1" || { echo "warning: ray stop failed on $host" >&2; status=1; }
done
exit $status
