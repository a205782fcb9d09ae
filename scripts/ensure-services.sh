#!/usr/bin/env bash
# Make sure the servers the test suite talks to are up: PostgreSQL and RabbitMQ (preinstalled on our machines).
# Starts a stopped one with the commands of shared/design.md §5; fails loudly when one cannot be had.
set -euo pipefail

wait_for() {  # name, command, seconds
  local name=$1 check=$2 seconds=$3
  for ((i = 0; i < seconds * 2; i++)); do
    if eval "$check" >/dev/null 2>&1; then echo "  $name: up"; return 0; fi
    sleep 0.5
  done
  echo "  $name: NOT reachable after ${seconds}s — the integration tests need it" >&2
  return 1
}

echo "checking services"
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "  postgres: starting"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
wait_for postgres "pg_isready -q -h 127.0.0.1 -p 5432" 30

if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "  rabbitmq: starting"
  rabbitmq-server -detached || true
fi
wait_for rabbitmq "(exec 3<>/dev/tcp/127.0.0.1/5672)" 60
