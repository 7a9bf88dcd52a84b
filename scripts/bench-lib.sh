# Shared by scripts/bench-*: build, a test file, a free port, and starting our server.
# Sourced, not run. Everything listens on 127.0.0.1 only and is removed on exit.

# `bench_setup nofile` skips the test file (benchmarks that need no content).
bench_setup() {
  cd "$(dirname "$0")/.."
  cargo build --release --locked --quiet
  WORK=$(mktemp -d)
  trap 'bench_cleanup' EXIT
  # A private copy: a shared CARGO_TARGET_DIR may be rebuilt by others while we run.
  cp "${CARGO_TARGET_DIR:-$PWD/target}/release/torrent-gateway" "$WORK/torrent-gateway"
  BIN=$WORK/torrent-gateway
  [ "${1:-}" = nofile ] && return 0
  MIB=${BENCH_MIB:-1024}
  # Large writes leave the file in the page cache as large folios (see bench-create).
  dd if=/dev/urandom of="$WORK/big.bin" bs=4M count=$((MIB / 4)) status=none
  cat "$WORK/big.bin" >/dev/null
}

bench_cleanup() {
  [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ -n "${NGINX_PID:-}" ] && kill "$NGINX_PID" 2>/dev/null
  [ -n "${OTHER_PID:-}" ] && kill "$OTHER_PID" 2>/dev/null && wait "$OTHER_PID" 2>/dev/null
  rm -rf "$WORK"
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts `serve` on a free port with its data under $WORK/data; sets SERVER_PID and API.
start_gateway() {
  local port
  port=$(free_port)
  # Every listener on loopback: the peer, Blossom and DHT ports too, unless the caller picks them.
  local extra=()
  [[ " $* " == *" --peer-addr "* ]] || extra+=(--peer-addr 127.0.0.1:0)
  [[ " $* " == *" --blossom-addr "* ]] || extra+=(--blossom-addr 127.0.0.1:0)
  [[ " $* " == *" --dht-addr "* ]] || extra+=(--dht-addr 127.0.0.1:0)
  "$BIN" serve --api-addr "127.0.0.1:$port" --data-dir "$WORK/data" "${extra[@]}" "$@" \
    2>"$WORK/serve.log" &
  SERVER_PID=$!
  API="http://127.0.0.1:$port"
  for _ in $(seq 100); do
    curl -sf "$API/api/health" >/dev/null && return 0
    sleep 0.05
  done
  echo "gateway did not start: $(cat "$WORK/serve.log")" >&2
  return 1
}

# Waits (bounded) until a UDP tracker on 127.0.0.1:$1 answers a BEP-15 connect.
udp_tracker_ready() {
  /usr/bin/python3 - "$1" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.1)
for _ in range(100):
    s.sendto(struct.pack(">QII", 0x41727101980, 0, 7), ("127.0.0.1", int(sys.argv[1])))
    try:
        if len(s.recv(64)) == 16:
            sys.exit(0)
    except OSError:
        pass
sys.exit("UDP tracker on port %s did not answer" % sys.argv[1])
PY
}

# Starts nginx (sendfile, keep-alive) serving directory $1 on a free port; sets NGINX_PID
# and NGINX_URL (ends with /). Its workers drop to an unprivileged user when started as
# root: the directory and its parents must be world-readable (chmod a+rx).
start_nginx() {
  local root=$1 nport
  command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
  nport=$(free_port)
  mkdir -p "$WORK/nginx/tmp"
  cat >"$WORK/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path $WORK/nginx/tmp;
  proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp;
  uwsgi_temp_path $WORK/nginx/tmp;
  scgi_temp_path $WORK/nginx/tmp;
  server { listen 127.0.0.1:$nport; root $root; }
}
CONF
  nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
  NGINX_PID=$!
  NGINX_URL="http://127.0.0.1:$nport/"
  for _ in $(seq 100); do
    curl -s -o /dev/null "$NGINX_URL" && return 0
    sleep 0.05
  done
  echo "nginx did not start: $(cat "$WORK/nginx/error.log")" >&2
  return 1
}

# `measure NAME CMD...`: runs CMD (stdin closed), sampling its anonymous RSS every 10 ms;
# appends "NAME WALL_SECS CPU_SECS PEAK_ANON_KB" to $WORK/measured and fails when CMD does.
measure() {
  local name=$1
  shift
  /usr/bin/python3 - "$name" "$WORK/measured" "$@" <<'PY'
import os, subprocess, sys, time
name, out, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
t = time.perf_counter()
p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
peak = 0
while True:
    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
    if pid:
        break
    try:
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    peak = max(peak, int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.01)
wall = time.perf_counter() - t
code = os.waitstatus_to_exitcode(status)
if code != 0:
    sys.exit(f"{name}: {cmd[0]} exited with {code}")
with open(out, "a") as f:
    f.write(f"{name} {wall:.3f} {ru.ru_utime + ru.ru_stime:.3f} {peak}\n")
PY
}
