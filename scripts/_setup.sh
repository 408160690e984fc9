# Shared by scripts/serve and scripts/test: make .venv and install requirements.txt.
# Sourced, not run. Re-installs only when requirements.txt changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements.txt"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  echo "$want" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"

# redis-server: the tests start private ones, and the Redis backend needs one to talk to.
ensure_redis_server_installed() {
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "setup: installing redis-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
}

# nginx: the production front (scripts/cluster --production) and the tests that go through it.
# Debian's package, run only as our own process (nginx -p <prefix> -c <generated conf>): the
# system service and /etc/nginx are never used.
ensure_nginx_installed() {
  if [ ! -x /usr/sbin/nginx ]; then
    echo "setup: installing nginx (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; } \
      || { echo "setup: MISSING: Debian package nginx could not be installed (apt-get install -y nginx)" >&2; return 1; }
  fi
}

redis_answers() {
  .venv/bin/python - "$1" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=1).ping()
PY
}

# Make sure Redis answers on 127.0.0.1:6379, starting one when nothing does.
ensure_redis_running() {
  ensure_redis_server_installed
  if ! redis_answers "redis://127.0.0.1:6379/0"; then
    echo "setup: starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --port 6379 --bind 127.0.0.1 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 50); do redis_answers "redis://127.0.0.1:6379/0" && return 0; sleep 0.1; done
    echo "setup: redis-server did not answer on 127.0.0.1:6379" >&2
    return 1
  fi
}

# The real clients (Web Chat UI bundle, Node e2e packages, Chromium): scripts/_clients.sh.
source "$ROOT/scripts/_clients.sh"
