#!/usr/bin/env bash
# Installs the Debian packages the test suite starts for real: PostgreSQL,
# Mosquitto (external-broker mode), influxd 1.x, VictoriaMetrics (a real
# /api/v2/write peer) and Chromium (browser tests). Idempotent: it does nothing
# when every binary is already there, so `npm test` stays fast on a set-up machine.
set -euo pipefail

missing=()
have_pg() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
have_pg || missing+=(postgresql)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-system-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-system-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts packaged services through systemd, which CI machines lack; the
# tests start their own instances on free ports, so nothing else is needed.
