#!/usr/bin/env bash
# Copy the code (the files git tracks, with their working-tree contents) to TESP_REMOTE_DIR on
# every node; a node whose TESP_REMOTE_DIR is this checkout is skipped. Files are overwritten,
# nothing is deleted. Settings: scripts/env.sh --help.
#
# Usage: scripts/upload_codes.sh [--help]

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
tesp_help_or_no_args "$@"
tesp_load_settings
tesp_require TESP_HEAD_HOST TESP_REMOTE_DIR
command -v git > /dev/null || tesp_die "git is needed to list the files to upload"

cd "$TESP_REPO_DIR"
mapfile -t files < <(git ls-files --cached --others --exclude-standard | while read -r f; do [[ -f "$f" ]] && echo "$f"; done)
[[ ${#files[@]} -gt 0 ]] || tesp_die "no files to upload in $TESP_REPO_DIR"
for host in $(tesp_all_hosts); do
    target="$TESP_REMOTE_DIR"
    if tesp_is_local "$host"; then
        target="${target/#\~/$HOME}"
        if [[ -d "$target" && "$(cd "$target" && pwd -P)" == "$(pwd -P)" ]]; then
            echo "== $host: $target is this checkout; skipped"
            continue
        fi
    fi
    echo "== $host: ${#files[@]} files to $target"
    target_q="$(tesp_q "$target")"
    tar -czf - "${files[@]}" | tesp_on "$host" "mkdir -p $target_q && tar -xzf - -C $target_q" \
        || tesp_die "upload to $host failed"
done
