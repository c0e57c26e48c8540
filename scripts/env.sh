#!/usr/bin/env bash
# Cluster settings for the tesp scripts, read from the environment or from scripts/cluster.env
# (a local, uncommitted file of VAR=value lines; the environment wins). Sourced by the other
# scripts; run it directly to print the resolved settings.
#
# Usage: scripts/env.sh [--help]
#
#   TESP_HEAD_HOST          head node address as the workers reach it (required)
#   TESP_HEAD_PORT          Ray's GCS port on the head                       [6379]
#   TESP_WORKER_HOSTS       space-separated worker hosts                      [none]
#   TESP_SSH_USER           ssh user for the nodes                            [current user]
#   TESP_SSH_OPTS           extra ssh options                                 [-o BatchMode=yes]
#   TESP_REMOTE_DIR         where the code lives on every node                [~/tesp]
#   TESP_PYTHON             python3.11 used to create the nodes' environment  [python3.11]
#   TESP_VENV               the nodes' virtual environment                    [$TESP_REMOTE_DIR/.venv]
#   TESP_NUM_CPUS           CPUs Ray may use per node                         [all]
#   TESP_HEAD_NUM_CPUS      CPUs Ray may use on the head                      [TESP_NUM_CPUS]
#   TESP_OBJECT_STORE_BYTES object store size per node                        [Ray's default]
#   TESP_TOKEN_FILE         Ray auth token shared by every node               [~/.ray/auth_token]
#
# A host equal to localhost, 127.0.0.1 or this machine's name is driven directly, without ssh
# (so one machine can play head and worker).

TESP_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TESP_REPO_DIR="$(dirname "$TESP_SCRIPTS_DIR")"

tesp_usage() {  # print the header comment of a script
    sed -n '2,/^$/p' "$1" | sed -e 's/^# \{0,1\}//' -e '/^!/d'
}

tesp_help_or_no_args() {  # for scripts that take no arguments but --help
    if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
        tesp_usage "$0"
        exit 0
    fi
    [[ $# -eq 0 ]] || tesp_die "unexpected argument '$1' (see --help)"
}

tesp_die() {
    echo "error: $*" >&2
    exit 2
}

tesp_load_settings() {
    local file="${TESP_CLUSTER_ENV:-$TESP_SCRIPTS_DIR/cluster.env}"
    if [[ -f "$file" ]]; then
        local line key value
        while IFS= read -r line || [[ -n "$line" ]]; do
            [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
            key="${line%%=*}"
            value="${line#*=}"
            [[ "$key" =~ ^TESP_[A-Z_]+$ ]] || tesp_die "$file: '$line' is not a TESP_NAME=value line"
            [[ -n "${!key+set}" ]] || export "$key=$value"
        done < "$file"
    fi
    : "${TESP_HEAD_PORT:=6379}"
    : "${TESP_WORKER_HOSTS:=}"
    : "${TESP_SSH_USER:=$(id -un)}"
    : "${TESP_SSH_OPTS:=-o BatchMode=yes}"
    : "${TESP_REMOTE_DIR:=~/tesp}"
    : "${TESP_PYTHON:=python3.11}"
    : "${TESP_VENV:=$TESP_REMOTE_DIR/.venv}"
    : "${TESP_NUM_CPUS:=}"
    : "${TESP_HEAD_NUM_CPUS:=$TESP_NUM_CPUS}"
    : "${TESP_OBJECT_STORE_BYTES:=}"
    : "${TESP_TOKEN_FILE:=$HOME/.ray/auth_token}"
    [[ "$TESP_HEAD_PORT" =~ ^[0-9]+$ ]] || tesp_die "TESP_HEAD_PORT='$TESP_HEAD_PORT' is not a port number"
    local var
    for var in TESP_NUM_CPUS TESP_HEAD_NUM_CPUS; do
        [[ -z "${!var}" || "${!var}" =~ ^[0-9]+$ ]] || tesp_die "$var='${!var}' is not an integer"
    done
    [[ -z "$TESP_OBJECT_STORE_BYTES" || "$TESP_OBJECT_STORE_BYTES" =~ ^[0-9]+$ ]] \
        || tesp_die "TESP_OBJECT_STORE_BYTES='$TESP_OBJECT_STORE_BYTES' is not a number of bytes"
}

tesp_require() {  # tesp_require VAR...: fail clearly when a setting is missing
    local var
    for var in "$@"; do
        [[ -n "${!var:-}" ]] || tesp_die "$var is not set: export it or add $var=... to scripts/cluster.env (see scripts/env.sh --help)"
    done
}

tesp_is_local() {
    case "$1" in
        localhost | 127.0.0.1 | "$(hostname)" | "$(hostname -f 2>/dev/null)") return 0 ;;
        *) return 1 ;;
    esac
}

tesp_on() {  # tesp_on HOST COMMAND: run a shell command on HOST (directly if it is this machine)
    local host="$1"
    shift
    if tesp_is_local "$host"; then
        bash -c "$*"
    else
        # shellcheck disable=SC2086
        ssh $TESP_SSH_OPTS "$TESP_SSH_USER@$host" "bash -lc $(printf '%q' "$*")"
    fi
}

tesp_q() {  # tesp_q PATH: PATH as one double-quoted word for a node's shell ("~/" becomes "$HOME/")
    local v="$1" prefix=""
    if [[ "$v" == "~" || "$v" == "~/"* ]]; then
        prefix='$HOME'
        v="${v:1}"
    fi
    v="${v//\\/\\\\}"
    v="${v//\"/\\\"}"
    v="${v//\$/\\\$}"
    v="${v//\`/\\\`}"
    printf '"%s%s"' "$prefix" "$v"
}

tesp_activate() {  # the shell snippet that enters the nodes' environment (if it exists)
    local venv
    venv="$(tesp_q "$TESP_VENV")"
    echo "if [ -f $venv/bin/activate ]; then . $venv/bin/activate; fi"
}

tesp_private_token() {  # the token file must be readable by its owner only: fix it, saying so
    local file="$1" mode
    [[ -e "$file" ]] || return 0
    mode="$(stat -c %a "$file")"
    if [[ "$mode" != "600" && "$mode" != "400" ]]; then
        chmod 600 "$file"
        echo "made the auth token $file readable by its owner only (it was $mode)"
    fi
}

tesp_all_hosts() {
    echo "$TESP_HEAD_HOST" $TESP_WORKER_HOSTS | tr ' ' '\n' | awk 'NF && !seen[$0]++'
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
        tesp_usage "$0"
        exit 0
    fi
    tesp_load_settings
    tesp_require TESP_HEAD_HOST
    for var in TESP_HEAD_HOST TESP_HEAD_PORT TESP_WORKER_HOSTS TESP_SSH_USER TESP_SSH_OPTS TESP_REMOTE_DIR \
        TESP_PYTHON TESP_VENV TESP_NUM_CPUS TESP_HEAD_NUM_CPUS TESP_OBJECT_STORE_BYTES TESP_TOKEN_FILE; do
        printf '%s=%s\n' "$var" "${!var}"
    done
fi
