#!/usr/bin/env bash
# Stop the Ceph daemons that scripts/rgw-start.sh started: only the PIDs it recorded
# in $CAMVAULT_RGW_DIR/pids (default /tmp/camvault-rgw), and only while each PID is
# still the program it was (a reused PID is left alone).
#   scripts/rgw-stop.sh           # stop; keep the logs in the directory
#   scripts/rgw-stop.sh --purge   # stop and remove the directory
set -uo pipefail

DIR="${CAMVAULT_RGW_DIR:-/tmp/camvault-rgw}"
MARKER=".camvault-rgw"
purge=0
[ "${1:-}" = "--purge" ] && purge=1

log() { echo "rgw-stop: $*" >&2; }

# still the program we started (a reused PID or a zombie does not count)
ours_alive() {
  local pid="$1" name="$2" stat
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [ "${stat%% *}" != Z ]
}

ours=()
if [ -s "$DIR/pids" ]; then
  while read -r pid name; do
    [ -n "${pid:-}" ] || continue
    if ours_alive "$pid" "$name"; then
      kill -TERM "$pid" 2>/dev/null && ours+=("$pid:$name")
    fi
  done <"$DIR/pids"
fi

# The cluster keeps nothing worth a slow shutdown (memstore, a new cluster every
# start), and radosgw takes ~5 s to leave on SIGTERM: give them 2 s, then SIGKILL.
if [ "${#ours[@]}" -gt 0 ]; then
  for _ in $(seq 1 20); do
    left=0
    for entry in "${ours[@]}"; do ours_alive "${entry%%:*}" "${entry#*:}" && left=1; done
    [ "$left" -eq 0 ] && break
    sleep 0.1
  done
  for entry in "${ours[@]}"; do
    pid="${entry%%:*}" name="${entry#*:}"
    if ours_alive "$pid" "$name"; then
      kill -KILL "$pid" 2>/dev/null
      for _ in $(seq 1 50); do ours_alive "$pid" "$name" || break; sleep 0.1; done
    fi
  done
  log "stopped ${ours[*]}"
fi

# only in a folder this script's partner made (CAMVAULT_RGW_DIR may name any folder)
if [ -e "$DIR/$MARKER" ]; then
  rm -f "$DIR/pids" "$DIR/env"
  [ "$purge" -eq 1 ] && rm -rf "$DIR"
fi
exit 0
