#!/usr/bin/env bash
# Prepare every node (head and workers): create the Python environment TESP_VENV with
# TESP_PYTHON, install the requirements from the code in TESP_REMOTE_DIR (upload it first with
# scripts/upload_codes.sh), and check that tesp, Ray, PyTorch and MuJoCo import. With
# --check-only, only the import check runs. Settings: scripts/env.sh --help.
#
# Usage: scripts/exec_commands.sh [--check-only] [--help]

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
check_only=0
case "${1:-}" in
    -h | --help) tesp_usage "$0"; exit 0 ;;
    --check-only) check_only=1 ;;
    "") ;;
    *) tesp_die "unexpected argument '$1' (see --help)" ;;
esac
tesp_load_settings
tesp_require TESP_HEAD_HOST TESP_REMOTE_DIR

dir_q="$(tesp_q "$TESP_REMOTE_DIR")"
venv_q="$(tesp_q "$TESP_VENV")"
python_q="$(printf '%q' "$TESP_PYTHON")"
install="cd $dir_q || exit 3"
install+=" && { [ -f $venv_q/bin/activate ] || $python_q -m venv $venv_q; }"
install+=" && . $venv_q/bin/activate && pip install -q torch==2.13.0 && pip install -q -r requirements.txt"
check="cd $dir_q || exit 3; $(tesp_activate);"
check+=" python -c 'import mujoco, ray, tesp, torch; print(\"ok: ray\", ray.__version__, \"torch\", torch.__version__, \"mujoco\", mujoco.__version__)'"

status=0
for host in $(tesp_all_hosts); do
    echo "== $host"
    if [[ $check_only -eq 0 ]]; then
        tesp_on "$host" "$install" || { echo "error: installing on $host failed" >&2; status=1; continue; }
    fi
    tesp_on "$host" "$check" || { echo "error: the import check failed on $host" >&2; status=1; }
done
exit $status
