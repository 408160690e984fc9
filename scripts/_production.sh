# `scripts/cluster --production`: the production topology on this machine (docs/deploy.md).
# Sourced by scripts/cluster after scripts/_setup.sh. Debian's nginx (its own process, never
# the system service) terminates TLS on FRONT_PORT in front of daphne replicas on free
# loopback ports, in production settings (DEBUG=0, keys made for the run), on PostgreSQL
# (a database made for the run, dropped at exit) and the Redis backplane (a channel of the
# run). Ctrl-C stops everything it started, by pid.
#   FRONT_PORT=8443           the TLS listener (https://127.0.0.1:8443/)
#   REPLICAS=2                how many daphne replicas
#   POSTGRES_URL              the server (default postgresql://postgres@127.0.0.1:5432/postgres)
#   REDIS_URL                 the backplane (default redis://127.0.0.1:6379/0, started if silent)
#   KEEP_DATABASE=1           keep the run's database at exit

run_production_cluster() {
  local front_port="${FRONT_PORT:-8443}" count="${REPLICAS:-2}"
  local postgres="${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
  local run_id
  run_id="$(date -u +%Y%m%d%H%M%S)_$$"
  ensure_nginx_installed
  if [ -z "${REDIS_URL:-}" ]; then
    export REDIS_URL="redis://127.0.0.1:6379/0"
    ensure_redis_running
  fi
  prefix="$(mktemp -d /tmp/webchat-production.XXXXXX)"
  database="webchat_cluster_${run_id}"
  pids=()
  nginx_pid=""
  trap stop_production EXIT
  trap 'echo "cluster: stopping"; exit 130' INT
  trap 'exit 143' TERM

  # Keys for this run unless given; kept in $prefix/env (mode 600), never printed.
  export DEBUG=0
  export DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')}"
  export WEBCHAT_TOKEN_SIGNING_KEY="${WEBCHAT_TOKEN_SIGNING_KEY:-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')}"
  export WEBCHAT_METRICS_TOKEN="${WEBCHAT_METRICS_TOKEN:-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))')}"
  export ALLOWED_HOSTS="${ALLOWED_HOSTS:-127.0.0.1,localhost}"
  export CORS_ALLOWED_ORIGINS="${CORS_ALLOWED_ORIGINS:-https://127.0.0.1:${front_port}}"
  # Only nginx, on this host, may speak for clients (webchat/forwarded.py).
  export WEBCHAT_TRUSTED_PROXIES="${WEBCHAT_TRUSTED_PROXIES:-127.0.0.1}"
  export WEBCHAT_NOTIFIER_BACKEND=redis
  export WEBCHAT_NOTIFIER_CHANNEL="${WEBCHAT_NOTIFIER_CHANNEL:-cluster:${run_id}}"
  export MEDIA_ROOT="${MEDIA_ROOT:-${prefix}/media}"
  export DATABASE_URL="${postgres%/*}/${database}"
  export DATABASE_CONN_MAX_AGE=60
  ( umask 077; env | grep -E '^(DEBUG|DJANGO_SECRET_KEY|WEBCHAT_[A-Z_]+|ALLOWED_HOSTS|CORS_ALLOWED_ORIGINS|DATABASE_URL|DATABASE_CONN_MAX_AGE|REDIS_URL|MEDIA_ROOT)=' \
      | sed 's/^/export /; s/=\(.*\)$/="\1"/' > "$prefix/env" )

  .venv/bin/python - "$postgres" "$database" <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True, connect_timeout=5) as conn:
    conn.execute(f'CREATE DATABASE "{sys.argv[2]}"')
PY
  .venv/bin/python manage.py migrate --noinput >/dev/null

  local replica_args=() addresses=() port
  for _ in $(seq 1 "$count"); do
    port="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    .venv/bin/daphne -b 127.0.0.1 -p "$port" \
      --ping-interval 20 --ping-timeout 30 webchat.asgi:application &
    pids+=("$!")
    replica_args+=(--replica "127.0.0.1:${port}")
    addresses+=("127.0.0.1:${port}")
  done
  .venv/bin/python manage.py nginx_conf --prefix "$prefix/nginx" --listen "127.0.0.1:${front_port}" \
    --self-signed "${replica_args[@]}" >/dev/null
  /usr/sbin/nginx -p "$prefix/nginx" -c "$prefix/nginx/nginx.conf" -e "$prefix/nginx/logs/error.log" &
  nginx_pid="$!"

  local ca="$prefix/nginx/tls/ca.pem" url="https://127.0.0.1:${front_port}"
  for _ in $(seq 1 300); do
    curl -sf --cacert "$ca" "$url/readyz" >/dev/null 2>&1 && break
    kill -0 "$nginx_pid" 2>/dev/null || { echo "cluster: nginx exited:" >&2; tail -5 "$prefix/nginx/logs/error.log" >&2; exit 1; }
    sleep 0.2
  done
  curl -sf --cacert "$ca" "$url/readyz" >/dev/null || { echo "cluster: $url/readyz never answered 200" >&2; exit 1; }
  local secret
  secret="$(.venv/bin/python manage.py create_tenant "cluster-${run_id}" | tail -n 1)"
  echo "$secret" > "$prefix/tenant-secret"
  chmod 600 "$prefix/tenant-secret"
  cat <<EOF
cluster: ready at ${url}/ (nginx -> ${#pids[@]} replicas ${addresses[*]}; database ${database}; channel ${WEBCHAT_NOTIFIER_CHANNEL})
cluster: the CA to trust: ${ca}
cluster: a tenant's secret is in ${prefix}/tenant-secret; the run's settings in ${prefix}/env (source it to run manage.py)
cluster: try: curl --cacert ${ca} -X POST ${url}/v3/directline/tokens/generate -H "Authorization: Bearer \$(cat ${prefix}/tenant-secret)"
cluster: Ctrl-C stops it
EOF
  local status=0
  wait -n "$nginx_pid" "${pids[@]}" || status=$?
  echo "cluster: a process exited (status ${status}); stopping the others" >&2
  exit "$status"
}

# Stop what run_production_cluster started, by pid; drop the run's database (called once, on
# any way out).
stop_production() {
  [ -n "${nginx_pid:-}" ] && kill "$nginx_pid" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -n "${nginx_pid:-}" ] && wait "$nginx_pid" 2>/dev/null || true
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  nginx_pid=""
  if [ -n "${database:-}" ] && [ "${KEEP_DATABASE:-0}" != "1" ]; then
    .venv/bin/python - "${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}" "$database" <<'PY' || true
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True, connect_timeout=5) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)')
PY
    database=""
  fi
  [ -n "${prefix:-}" ] && rm -rf "$prefix"
  prefix=""
}
