#!/usr/bin/env bash
# The containers for real: builds the image, starts PostgreSQL, the dashboard and 2 worker
# containers on a tiny study, checks what a user would, and tears everything down.
# Not run by CI: the image is several GB. Needs podman (or docker), and PostgreSQL's
# initdb/pg_ctl on the host (apt-get install postgresql).
#
#   docker/smoke.sh                 # on the default CUDA PyTorch base (pulled from its registry)
#   docker/smoke.sh --local-base    # on a Debian base made here with debootstrap (no registry)
#
# Environment: DATA (a folder with FashionMNIST/raw; default ../shared/data), TRIALS (4),
# ENGINE (podman, else docker), KEEP=1 to leave everything running for a look.
#
# PostgreSQL runs on the host (a throwaway server on a free loopback port) and every
# container uses the host's network, so the dashboard answers on the host's 127.0.0.1 as
# compose.yaml publishes it; compose's own network and its postgres:16 service are not used.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCAL_BASE=0
[ "${1:-}" = "--local-base" ] && LOCAL_BASE=1
ENGINE=${ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$ENGINE" ] || { echo "smoke: neither podman nor docker is installed" >&2; exit 2; }
DATA=${DATA:-../shared/data}
[ -d "$DATA/FashionMNIST/raw" ] || { echo "smoke: no FashionMNIST/raw in $DATA; set DATA" >&2; exit 2; }
DATA=$(cd "$DATA" && pwd)
TRIALS=${TRIALS:-4}
TAG=hpsearch:smoke
ID=hps-smoke-$$
WORK=$(mktemp -d /tmp/hps-smoke.XXXX)
chmod 755 "$WORK"
say() { printf '[smoke %s] %s\n' "$(date +%T)" "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

ENGINE_ARGS=()
if [ "$(basename "$ENGINE")" = podman ] && [ -z "${CONTAINERS_CONF:-}" ]; then
    # Machines that refuse setrlimit need podman's default ulimits off; crun fails on hybrid cgroups.
    printf '[containers]\ndefault_ulimits = []\n' > "$WORK/containers.conf"
    export CONTAINERS_CONF=$WORK/containers.conf
    command -v runc >/dev/null && ENGINE_ARGS=(--runtime runc)
fi
engine() { "$ENGINE" "${ENGINE_ARGS[@]}" "$@"; }

PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -1)")
[ -x "$PG_BIN/initdb" ] || { echo "smoke: PostgreSQL's initdb not found; apt-get install postgresql" >&2; exit 2; }
AS_PG=(); [ "$(id -u)" -eq 0 ] && AS_PG=(runuser -u postgres --) && chown postgres "$WORK"

teardown() {
    if [ "${KEEP:-0}" = 1 ]; then say "KEEP=1: left running (containers $ID-*, volume $ID-artifacts, $WORK)"; return; fi
    engine rm -f "$ID-dashboard" "$ID-worker1" "$ID-worker2" >/dev/null 2>&1 || true
    engine volume rm -f "$ID-artifacts" >/dev/null 2>&1 || true
    [ -f "$WORK/pg/postmaster.pid" ] && "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg" stop -m fast >/dev/null || true
    rm -rf "$WORK"
    say "torn down"
}
trap teardown EXIT

# 1. The image.
BUILD_ARGS=()
if [ "$LOCAL_BASE" = 1 ]; then
    BASE=localhost/hpsearch-base:bookworm
    if ! engine image inspect "$BASE" > /dev/null 2>&1; then
        say "making the local base $BASE: Debian bookworm (debootstrap) + python3 venv on PATH"
        ROOTFS=$WORK/rootfs
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" \
            http://deb.debian.org/debian > "$WORK/debootstrap.log"
        chroot "$ROOTFS" python3 -m venv /opt/venv
        # The host's CA bundle and pip settings, so that pip in the build reaches the same registry.
        cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
        [ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOTFS/etc/pip.conf"
        tar -C "$ROOTFS" -c . | engine import \
            --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$BASE" > /dev/null 2> "$WORK/import.log" || { cat "$WORK/import.log"; exit 1; }
        rm -rf "$ROOTFS"
    fi
    BUILD_ARGS=(--build-arg "BASE=$BASE" --network host)
fi
say "building $TAG"
start=$(date +%s)
engine build "${BUILD_ARGS[@]}" -f docker/Dockerfile -t "$TAG" . > "$WORK/build.log" 2>&1 \
    || { tail -20 "$WORK/build.log"; exit 1; }
say "built in $(( $(date +%s) - start )) s; image size: $(engine image inspect "$TAG" --format '{{.Size}}' | awk '{printf "%.2f GB", $1/1e9}')"

# 2. PostgreSQL (host), the dashboard and two workers (containers).
PG_PORT=$(free_port)
PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(8))')
echo "$PASSWORD" > "$WORK/pwfile"
chmod 644 "$WORK/pwfile"
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$WORK/pg" -U hpsearch --auth=md5 --pwfile="$WORK/pwfile" > /dev/null
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
    -o "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=200" start > /dev/null
PGPASSWORD=$PASSWORD "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U hpsearch -d postgres -qc 'CREATE DATABASE hpsearch'
STORAGE="postgresql+psycopg://hpsearch:$PASSWORD@127.0.0.1:$PG_PORT/hpsearch"
say "PostgreSQL on 127.0.0.1:$PG_PORT"

COMMON=(--network host -e "HPSEARCH_STORAGE=$STORAGE" -v "$ID-artifacts:/artifacts")
DASH_PORT=$(free_port)
engine volume create "$ID-artifacts" > /dev/null
engine run -d --name "$ID-dashboard" "${COMMON[@]}" "$TAG" dashboard --host 127.0.0.1 --port "$DASH_PORT" > /dev/null
RUN=(run fashion-lenet --trials "$TRIALS" --epochs 1 --subset 300 --device cpu)
for w in 1 2; do
    engine run -d --name "$ID-worker$w" "${COMMON[@]}" -v "$DATA:/data:ro" "$TAG" "${RUN[@]}" > /dev/null
done
say "dashboard on 127.0.0.1:$DASH_PORT; 2 workers: hpsearch ${RUN[*]}"
for w in 1 2; do
    status=$(engine wait "$ID-worker$w")
    say "worker $w exited $status; its last line: $(engine logs "$ID-worker$w" 2>&1 | tail -1)"
    [ "$status" = 0 ] || { engine logs "$ID-worker$w" 2>&1 | tail -20; exit 1; }
done

# 3. What a user would check.
fail=0
check() { if eval "$2"; then say "ok: $1"; else say "FAILED: $1"; fail=1; fi; }
show=$(engine run --rm --network host -e "HPSEARCH_STORAGE=$STORAGE" "$TAG" show fashion-lenet)
echo "$show" | sed 's/^/    /' | head -4
finished=$(echo "$show" | sed -n 's/.*COMPLETE \([0-9]*\), PRUNED \([0-9]*\).*/\1 \2/p' | awk '{print $1 + $2}')
check "the study holds exactly $TRIALS finished trials (got ${finished:-none})" '[ "${finished:-0}" = "$TRIALS" ]'
best=$(echo "$show" | sed -n 's/^best value: .* (trial \([0-9]*\)).*/\1/p')
kept=$(engine run --rm --entrypoint sh -v "$ID-artifacts:/artifacts" "$TAG" -c 'find /artifacts -type f | wc -l')
check "trial weights are in the artifacts volume ($kept files; best trial ${best:-?})" '[ "${kept:-0}" -ge 1 ]'
studies=$(curl -sf "http://127.0.0.1:$DASH_PORT/api/studies" || true)
check "the dashboard answers on the host's loopback: $(echo "$studies" | head -c 120)" \
    'echo "$studies" | grep -q "\"study_name\": *\"fashion-lenet\""'
exported=$(engine run --rm "${COMMON[@]}" -v "$DATA:/data:ro" --entrypoint sh "$TAG" -c \
    'hpsearch export fashion-lenet --out /tmp/best.pt --score && hpsearch evaluate /tmp/best.pt' 2>&1)
echo "$exported" | grep -v "^  " | sed 's/^/    /' | head -6
check "hpsearch export and evaluate work from a container" 'echo "$exported" | grep -q "^test_accuracy [0-9.]* on "'
[ "$fail" = 0 ] && say "all checks passed" || say "some checks FAILED"
exit "$fail"
