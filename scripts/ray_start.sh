#!/usr/bin/env bash
# Start a Ray cluster for tesp: the head on TESP_HEAD_HOST, then one worker node on each of
# TESP_WORKER_HOSTS (over ssh; directly when a host is this machine). On every node it raises
# the open-files limit and uses the same Ray auth token (TESP_TOKEN_FILE, created on first use
# and copied to each node). Settings: scripts/env.sh --help.
#
# Usage: scripts/ray_start.sh [--help]
#
# Then, on the head: python main_train.py --env ENV --alg ALG --address auto

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
tesp_help_or_no_args "$@"
tesp_load_settings
tesp_require TESP_HEAD_HOST
command -v ray > /dev/null || [[ -x "${TESP_VENV/#\~/$HOME}/bin/ray" ]] || tesp_die "ray is not installed here (pip install -r requirements.txt)"

if [[ ! -s "$TESP_TOKEN_FILE" ]]; then
    mkdir -p "$(dirname "$TESP_TOKEN_FILE")"
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$TESP_TOKEN_FILE")
    echo "created the cluster's auth token: $TESP_TOKEN_FILE"
fi
tesp_private_token "$TESP_TOKEN_FILE"
token_q="$(tesp_q "$TESP_TOKEN_FILE")"

share_token() {  # copy the token to a remote node, readable by its owner only
    local host="$1"
    tesp_is_local "$host" && return 0
    # shellcheck disable=SC2086
    ssh $TESP_SSH_OPTS "$TESP_SSH_USER@$host" \
        "mkdir -p \"\$(dirname $token_q)\" && umask 077 && cat > $token_q && chmod 600 $token_q" < "$TESP_TOKEN_FILE"
}

node_env="ulimit -n 65536 2>/dev/null || ulimit -n \$(ulimit -Hn); $(tesp_activate);"
node_env+=" export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token_q RAY_USAGE_STATS_ENABLED=0;"
resources=""
[[ -n "$TESP_OBJECT_STORE_BYTES" ]] && resources+=" --object-store-memory=$TESP_OBJECT_STORE_BYTES"
head_resources="$resources"
[[ -n "$TESP_HEAD_NUM_CPUS" ]] && head_resources+=" --num-cpus=$TESP_HEAD_NUM_CPUS"
[[ -n "$TESP_NUM_CPUS" ]] && resources+=" --num-cpus=$TESP_NUM_CPUS"
address="$TESP_HEAD_HOST:$TESP_HEAD_PORT"

echo "starting the head on $TESP_HEAD_HOST (port $TESP_HEAD_PORT)"
share_token "$TESP_HEAD_HOST"
tesp_on "$TESP_HEAD_HOST" "$node_env ray start --head --node-ip-address=$TESP_HEAD_HOST --port=$TESP_HEAD_PORT$head_resources --disable-usage-stats" \
    || tesp_die "the head did not start on $TESP_HEAD_HOST"

for host in $TESP_WORKER_HOSTS; do
    echo "starting a worker node on $host"
    share_token "$host"
    tesp_on "$host" "$node_env ray start --address=$address$resources --disable-usage-stats" \
        || tesp_die "the worker node on $host did not join $address"
done
echo "cluster up: head $address, workers: ${TESP_WORKER_HOSTS:-none}"
echo "run on the head: python main_train.py --env ENV --alg ALG --address auto"
