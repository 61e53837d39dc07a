# shellcheck shell=bash
# Sourced by tools/bootstrap.sh. The caches under $FACECAST_CACHE are keyed by lock files, so
# every lock change starts a new folder beside the old ones; a folder no checkout has used for
# FACECAST_CACHE_KEEP_DAYS days (14) is removed. Another checkout on an older lock rebuilds it
# from the shared download caches (uv, Go), which are not touched here.

LAST_USED=.facecast-last-used

# prune_stale PARENT KEY: mark PARENT/KEY as used now, and remove its stale siblings. A folder
# from before the marker existed counts from its own modification time; *.partial folders
# belong to a build that may be running now, and are left alone.
prune_stale() {
    local parent=$1 keep=$2 days=${FACECAST_CACHE_KEEP_DAYS:-14} dir stamp
    touch "$parent/$keep/$LAST_USED"
    for dir in "$parent"/*/; do
        dir=${dir%/}
        case $dir in "$parent/$keep" | *.partial) continue ;; esac
        stamp=$dir/$LAST_USED
        [ -e "$stamp" ] || stamp=$dir
        if [ -n "$(find "$stamp" -maxdepth 0 -mtime +"$days" 2>/dev/null)" ]; then
            printf '==> removing %s (unused for over %s days)\n' "$dir" "$days" >&2
            rm -rf "$dir"
        fi
    done
}
