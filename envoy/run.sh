#!/usr/bin/env bash
# `make run`: the demo gateway (envoy/edge.yaml) as local processes: echo upstreams for the
# stages prod, canary and next on 127.0.0.1:8081-8083, Redis on 127.0.0.1:6390 and the rate limit
# service (edge-ratelimit, limits in envoy/ratelimit.yaml) on 127.0.0.1:8084 (metrics :9102), and
# Envoy on 127.0.0.1:8080 (admin 127.0.0.1:9901). Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_BIN=${ENVOY_BIN:-$(ls .venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1)}
ECHO_BIN=${ECHO_BIN:-target/release/echo-upstream}
RLS_BIN=${RLS_BIN:-target/release/edge-ratelimit}
REDIS_BIN=${REDIS_BIN:-$(command -v redis-server || true)}
WORKERS=${WORKERS:-2}
[ -x "$ENVOY_BIN" ] || { echo "run: Envoy not found; run 'make setup'" >&2; exit 1; }
[ -x "$ECHO_BIN" ] || { echo "run: $ECHO_BIN not found; run 'make echo'" >&2; exit 1; }
# RLS_BUILD (set by `make run`): a command that builds RLS_BIN, run in the background so that the
# gateway answers before the rate limit service is built; until it answers, the global rule uses its
# local fallback.
RLS_BUILD=${RLS_BUILD:-}
[ -n "$RLS_BUILD" ] || [ -x "$RLS_BIN" ] || { echo "run: $RLS_BIN not found; run 'make rls'" >&2; exit 1; }
[ -n "$REDIS_BIN" ] || { echo "run: redis-server not found; run 'make redis'" >&2; exit 1; }

for port in 8080 8081 8082 8083 8084 9102 6390 9901; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "run: 127.0.0.1:$port is already in use (another 'make run'?)" >&2
    exit 1
  fi
done

pids=()
cleanup() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=8081
for stage in prod canary next; do
  "$ECHO_BIN" --listen 127.0.0.1:$port --name $stage >/dev/null &
  pids+=($!)
  port=$((port + 1))
done
"$REDIS_BIN" --port 6390 --bind 127.0.0.1 --save '' --appendonly no --logfile /dev/null &
pids+=($!)
start_rls() {
  exec "$RLS_BIN" --config envoy/ratelimit.yaml --redis redis://127.0.0.1:6390 --listen 127.0.0.1:8084 \
    --metrics 127.0.0.1:9102 --log-format text >/dev/null
}
if [ -n "$RLS_BUILD" ]; then
  rls_log=target/tools/rls-build.log
  mkdir -p target/tools
  (
    if $RLS_BUILD >"$rls_log" 2>&1; then
      echo "run: rate limit service built; starting it on 127.0.0.1:8084"
      start_rls
    else
      echo "run: building the rate limit service failed (see $rls_log); /partner/ stays on its local fallback" >&2
      exec sleep infinity
    fi
  ) &
else
  start_rls &
fi
pids+=($!)
"$ENVOY_BIN" -c envoy/edge.yaml --concurrency "$WORKERS" --disable-hot-restart \
  -l warning --component-log-level wasm:info &
envoy_pid=$!
pids+=($envoy_pid)

for _ in $(seq 1 150); do
  kill -0 "$envoy_pid" 2>/dev/null || { echo "run: Envoy exited (see its log above)" >&2; exit 1; }
  if [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:9901/ready)" = 200 ]; then
    rls_note=""
    if ! (exec 3<>/dev/tcp/127.0.0.1/8084) 2>/dev/null; then
      rls_note="  (the rate limit service is still building in the background: until it answers, /partner/ uses its local fallback, 3/s with a burst of 5)"
    fi
    cat <<MSG

Demo gateway ready: http://127.0.0.1:8080 -> echo upstreams 'prod', 'canary', 'next' (admin http://127.0.0.1:9901)
  curl -s 127.0.0.1:8080/anything
  curl -s '127.0.0.1:8080/some/path?q=1' -H 'x-user-id: 42'
  curl -s 127.0.0.1:8080/status/418 -o /dev/null -w '%{http_code}\n'
  curl -s 127.0.0.1:8080/x -A 'python-requests/2.32' | grep x-bot        # bot detection: tagged
  for i in \$(seq 6); do curl -s -o /dev/null -w '%{http_code} ' 127.0.0.1:8080/x -A 'python-requests/2.32'; done; echo   # bots: 4 burst, 2/s
  curl -s 127.0.0.1:8080/x -A 'sqlmap/1.8' -w ' %{http_code}\n'          # scanner: blocked
  curl -s 127.0.0.1:8080/x -A 'Googlebot/2.1' -w ' %{http_code}\n'       # impersonator: blocked
  curl -s '127.0.0.1:8080/s/link?md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647' | grep '"uri"'   # signed link: valid, token stripped
  curl -s '127.0.0.1:8080/s/link?md5=AAAAAAAAAAAAAAAAAAAAAA&expires=2147483647'           # signed link: bad_signature
  for i in \$(seq 12); do curl -s -o /dev/null -w '%{http_code} ' 127.0.0.1:8080/api/x; done; echo   # rate limit: 10 burst, 5/s
  curl -si 127.0.0.1:8080/api/x | grep -i ratelimit
  for i in \$(seq 8); do curl -s -o /dev/null -w '%{http_code} ' 127.0.0.1:8080/partner/x -H 'x-api-key: k1' -A 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0' -H 'accept: text/html' -H 'accept-language: en'; done; echo   # global limit (RLS + Redis): 5 burst, 3/s, for a browser (curl's own user agent meets the bots rule first)
  curl -s 127.0.0.1:9102/metrics | grep '^edge_ratelimit_answers'${rls_note}
  curl -s 127.0.0.1:9901/stats/prometheus | grep '^rate_limit_'
  for u in \$(seq 20); do echo -n "user \$u: "; curl -s -o /dev/null -D - 127.0.0.1:8080/ -H "x-user-id: \$u" -A 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0' -H 'accept: text/html' -H 'accept-language: en' | grep -i x-echo-name; done   # stages: 90/10 sticky (user 11 is canary; a browser, as curl's own user agent is rate limited as a bot)
  curl -s -o /dev/null -D - '127.0.0.1:8080/?stage=next' | grep -i x-echo-name                 # stage override (QA)
  curl -s 127.0.0.1:9901/stats/prometheus | grep '^stage_routing_'
  curl -s 127.0.0.1:9901/stats/prometheus | grep -E '^envoy_http_downstream_rq_xx'
Ctrl-C stops Envoy, the echo upstreams, the rate limit service and Redis.
MSG
    wait -n "${pids[@]}" || true
    echo "run: a process exited" >&2
    exit 1
  fi
  sleep 0.2
done
echo "run: Envoy not ready after 30 s" >&2
exit 1
