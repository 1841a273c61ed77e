#!/usr/bin/env bash
# Start a single-node Ceph RGW on loopback for the s3 driver's tests.
#
#   eval "$(sudo scripts/rgw-start.sh)"     # or: scripts/rgw-start.sh >/dev/null; source /tmp/camvault-rgw/env
#   scripts/rgw-stop.sh                     # stops only the daemons this script started
#
# Runs as root. Installs Debian's ceph-mon, ceph-osd, radosgw and ceph-common when
# missing, then brings up, under $CAMVAULT_RGW_DIR (default /tmp/camvault-rgw):
# one mon, one OSD on memstore (pool size 1), radosgw (beast) on 127.0.0.1, an S3
# user and a bucket. Prints `export CAMVAULT_S3_*=…` lines on stdout and writes the
# same to $DIR/env; everything else goes to stderr or to logs in $DIR/log.
#
# Environment: CAMVAULT_RGW_DIR, CAMVAULT_RGW_PORT (default: a free port),
# CAMVAULT_RGW_BUCKET (default camvault-test).
# Running it while the cluster is up reuses it; a half-dead one is restarted cleanly.
set -euo pipefail

DIR="${CAMVAULT_RGW_DIR:-/tmp/camvault-rgw}"
BUCKET="${CAMVAULT_RGW_BUCKET:-camvault-test}"
REGION="us-east-1"
MARKER=".camvault-rgw"
# ceph's own CLI needs Debian's python3 (a pyenv shim on PATH may not have its modules)
PY=/usr/bin/python3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
T0=$(date +%s.%N)

log() { echo "rgw-start: $*" >&2; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (installs packages, runs ceph daemons)"
  exit 1
fi

# ---------------------------------------------------------------- packages
install_packages() {
  local bins=(ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool)
  local missing=0 b
  for b in "${bins[@]}"; do command -v "$b" >/dev/null 2>&1 || missing=1; done
  [ "$missing" -eq 0 ] && [ -x "$PY" ] && return 0
  local pkgs=(ceph-mon ceph-osd radosgw ceph-common)
  local t0 t1
  t0=$(date +%s)
  export DEBIAN_FRONTEND=noninteractive
  # an empty or stale package list: update first, else try as is and update on failure
  if ! apt-cache show ceph-mon >/dev/null 2>&1; then
    log "apt-get update"
    apt-get update -qq >&2
  fi
  log "installing ${pkgs[*]}"
  if ! apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2; then
    log "install failed; apt-get update and retry"
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
  fi
  t1=$(date +%s)
  log "packages installed in $((t1 - t0)) s"
}
install_packages

# ---------------------------------------------------------------- helpers
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# A tiny S3 client (stdlib only, SigV4) for readiness, the bucket and a smoke test.
s3py() {
  "$PY" - "$@" <<'PYEOF'
import datetime, hashlib, hmac, http.client, os, sys, time, urllib.parse

cmd = sys.argv[1]
endpoint = os.environ["CAMVAULT_S3_ENDPOINT"]
u = urllib.parse.urlsplit(endpoint)
host, port = u.hostname, u.port

def req(method, path, body=b"", signed=True, timeout=5.0):
    headers = {}
    if signed:
        ak = os.environ["CAMVAULT_S3_ACCESS_KEY"]; sk = os.environ["CAMVAULT_S3_SECRET_KEY"]
        region = os.environ["CAMVAULT_S3_REGION"]
        now = datetime.datetime.now(datetime.timezone.utc)
        amz = now.strftime("%Y%m%dT%H%M%SZ"); day = amz[:8]
        ph = hashlib.sha256(body).hexdigest()
        headers = {"host": f"{host}:{port}", "x-amz-date": amz, "x-amz-content-sha256": ph}
        names = sorted(headers)
        creq = "\n".join([method, urllib.parse.quote(path, safe="/-_.~"), "",
                          "".join(f"{k}:{headers[k]}\n" for k in names), ";".join(names), ph])
        scope = f"{day}/{region}/s3/aws4_request"
        sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
        k = ("AWS4" + sk).encode()
        for part in (day, region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={sig}")
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()

if cmd == "wait":
    deadline = time.time() + float(sys.argv[2])
    last = "no answer"
    while time.time() < deadline:
        try:
            st, _ = req("GET", "/", signed=False, timeout=2)
            if st == 200:
                sys.exit(0)
            last = f"HTTP {st}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    print(f"RGW did not answer on {endpoint}: {last}", file=sys.stderr); sys.exit(1)
elif cmd == "mkbucket":
    b = "/" + os.environ["CAMVAULT_S3_BUCKET"]
    for attempt in range(50):
        st, body = req("PUT", b)
        if st == 200 or (st == 409 and b"BucketAlreadyOwnedByYou" in body):
            sys.exit(0)
        # the first requests after start-up may race the zone's pools becoming writable
        time.sleep(0.2)
    print(f"create bucket {b}: HTTP {st} {body[:300]!r}", file=sys.stderr); sys.exit(1)
elif cmd == "headbucket":
    st, _ = req("HEAD", "/" + os.environ["CAMVAULT_S3_BUCKET"], timeout=3)
    sys.exit(0 if st == 200 else 1)
elif cmd == "smoke":
    key = "/" + os.environ["CAMVAULT_S3_BUCKET"] + "/.rgw-start-smoke"
    data = os.urandom(1000)
    steps = [("PUT", data, 200), ("GET", b"", 200), ("DELETE", b"", 204), ("GET", b"", 404)]
    for method, body, want in steps:
        st, got = req(method, key, body)
        if st != want or (method == "GET" and want == 200 and got != data):
            print(f"smoke test: {method} {key}: HTTP {st}, wanted {want}", file=sys.stderr); sys.exit(1)
else:
    sys.exit(f"unknown command {cmd}")
PYEOF
}

alive_all() {
  # every daemon in $DIR/pids is still the process we started
  [ -s "$DIR/pids" ] || return 1
  local pid name
  while read -r pid name; do
    [ -n "$pid" ] || continue
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
    grep -q ') Z ' "/proc/$pid/stat" 2>/dev/null && return 1
  done <"$DIR/pids"
  return 0
}

# ---------------------------------------------------------------- reuse?
if [ -s "$DIR/env" ] && alive_all; then
  set -a; . "$DIR/env"; set +a
  if s3py headbucket 2>/dev/null; then
    log "reusing the running RGW at $CAMVAULT_S3_ENDPOINT"
    cat "$DIR/env"
    exit 0
  fi
fi

# something is there but not healthy: stop what we started and start over
if [ -e "$DIR" ]; then
  if [ ! -e "$DIR/$MARKER" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    log "$DIR exists, is not empty and was not made by this script; refusing to touch it"
    exit 1
  fi
  CAMVAULT_RGW_DIR="$DIR" bash "$HERE/rgw-stop.sh" --purge >&2 || true
fi

mkdir -p "$DIR"/{log,run,mon.a,osd.0,rgw}
touch "$DIR/$MARKER"
: >"$DIR/pids"

STARTED_OK=0
on_exit() {
  local rc=$?
  if [ "$STARTED_OK" -ne 1 ]; then
    log "FAILED after $(elapsed) s (exit $rc); log tails follow"
    local f
    for f in "$DIR"/log/*; do
      [ -s "$f" ] || continue
      echo "----- $f" >&2
      tail -n 25 "$f" >&2
    done
    CAMVAULT_RGW_DIR="$DIR" bash "$HERE/rgw-stop.sh" >&2 || true
    [ "$rc" -eq 0 ] && rc=1
  fi
  exit "$rc"
}
trap on_exit EXIT

MON_PORT=$(free_port)
RGW_PORT="${CAMVAULT_RGW_PORT:-$(free_port)}"
FSID=$(cat /proc/sys/kernel/random/uuid)
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
CONF="$DIR/ceph.conf"
KEYRING="$DIR/keyring"

cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
mon initial members = a
ms bind msgr1 = false
ms bind ipv6 = false
keyring = $KEYRING
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
log to file = true
log to stderr = false
err to stderr = true
mon cluster log file = $DIR/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0

[mon]
mon data = $DIR/mon.\$id
paxos propose interval = 0.01
paxos min wait = 0.01

[osd]
osd data = $DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = 4294967296
osd crush update on start = true

[client.rgw]
rgw data = $DIR/rgw
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw dynamic resharding = false
rgw enable usage log = false
EOF

CEPH=(ceph -c "$CONF" --connect-timeout 20)

# ---------------------------------------------------------------- keys and mon
log "creating keys and the mon (port $MON_PORT)"
{
  ceph-authtool --create-keyring "$KEYRING" --gen-key -n mon. --cap mon 'allow *'
  ceph-authtool "$KEYRING" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *'
  # ceph-osd --mkfs writes no keyring: the OSD's key is made here and known to the mon from birth
  ceph-authtool "$KEYRING" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd'
  ceph-authtool "$KEYRING" --gen-key -n client.rgw \
    --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw'
  monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap"
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$KEYRING"
} >"$DIR/log/setup.log" 2>&1

start_daemon() {
  # start_daemon NAME(comm) LOGNAME ARGS... ; runs in the foreground of its own session
  local comm="$1" logname="$2"; shift 2
  setsid "$@" >>"$DIR/log/$logname.out" 2>&1 </dev/null &
  local pid=$!
  echo "$pid $comm" >>"$DIR/pids"
  sleep 0.05
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$comm" ]; then
    log "$comm did not start (pid $pid)"
    return 1
  fi
}

start_daemon ceph-mon mon.a ceph-mon -c "$CONF" -f -i a
for _ in $(seq 1 300); do
  if timeout 10 "${CEPH[@]}" mon stat >/dev/null 2>>"$DIR/log/setup.log"; then break; fi
  sleep 0.1
done
timeout 10 "${CEPH[@]}" mon stat >/dev/null 2>>"$DIR/log/setup.log" || { log "mon did not form a quorum"; exit 1; }
log "mon up at $(elapsed) s"

# ---------------------------------------------------------------- osd and pools
# one ceph CLI process reads every command from stdin (each CLI start costs ~0.4 s)
POOLS=(.rgw.root default.rgw.control default.rgw.meta default.rgw.log
       default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec)
{
  echo "osd new $OSD_UUID 0"
  for p in "${POOLS[@]}"; do
    echo "osd pool create $p 8 8 replicated"
    echo "osd pool application enable $p rgw"
  done
} | timeout 60 "${CEPH[@]}" >>"$DIR/log/setup.log" 2>&1 || { log "osd/pool creation failed"; exit 1; }

ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >>"$DIR/log/setup.log" 2>&1
start_daemon ceph-osd osd.0 ceph-osd -c "$CONF" -f -i 0
log "osd started at $(elapsed) s"

# ---------------------------------------------------------------- rgw, user, bucket
# random per start (test-only credentials; the env file is the one place they are kept)
ACCESS_KEY="$("$PY" -c 'import secrets,string; print("CV" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(18)))')"
SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(30).replace("-", "x").replace("_", "y"))')"
# radosgw-admin blocks until the OSD serves the pools; it also creates the default zone
timeout 120 radosgw-admin -c "$CONF" user create --uid=camvault --display-name="camvault tests" \
  --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >>"$DIR/log/setup.log" 2>&1 \
  || { log "radosgw-admin user create failed"; exit 1; }
log "user created at $(elapsed) s"

start_daemon radosgw client.rgw radosgw -c "$CONF" -f -n client.rgw

export CAMVAULT_S3_ENDPOINT="http://127.0.0.1:$RGW_PORT"
export CAMVAULT_S3_REGION="$REGION"
export CAMVAULT_S3_BUCKET="$BUCKET"
export CAMVAULT_S3_ACCESS_KEY="$ACCESS_KEY"
export CAMVAULT_S3_SECRET_KEY="$SECRET_KEY"
export CAMVAULT_S3_FORCE_PATH_STYLE=true

s3py wait 120 2>>"$DIR/log/setup.log" || { log "RGW did not answer on $CAMVAULT_S3_ENDPOINT"; exit 1; }
log "rgw answers at $(elapsed) s"
s3py mkbucket 2>>"$DIR/log/setup.log" || { log "could not create bucket $BUCKET"; exit 1; }
s3py smoke 2>>"$DIR/log/setup.log" || { log "signed PUT/GET/DELETE smoke test failed"; exit 1; }

umask 077
cat >"$DIR/env.tmp" <<EOF
export CAMVAULT_S3_ENDPOINT=$CAMVAULT_S3_ENDPOINT
export CAMVAULT_S3_REGION=$CAMVAULT_S3_REGION
export CAMVAULT_S3_BUCKET=$CAMVAULT_S3_BUCKET
export CAMVAULT_S3_ACCESS_KEY=$CAMVAULT_S3_ACCESS_KEY
export CAMVAULT_S3_SECRET_KEY=$CAMVAULT_S3_SECRET_KEY
export CAMVAULT_S3_FORCE_PATH_STYLE=true
EOF
mv "$DIR/env.tmp" "$DIR/env"
STARTED_OK=1
log "ready in $(elapsed) s: $CAMVAULT_S3_ENDPOINT bucket $BUCKET (env in $DIR/env, pids in $DIR/pids)"
cat "$DIR/env"
