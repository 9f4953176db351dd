#!/usr/bin/env bash
# Installs every Debian 12 package NIRC needs to build, run and test.
# This is the only place dependencies are named; the demo and the test
# command call it, so a fresh machine needs nothing installed by hand.
# Idempotent: packages already present are not reinstalled.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config git
  # required libraries
  libuv1-dev libprotobuf-c-dev protobuf-c-compiler libpq-dev libssl-dev
  # well-kept helpers: config files, JSON, systemd readiness, unit tests
  libinih-dev libjansson-dev libsystemd-dev libcmocka-dev libmicrohttpd-dev
  # alarm webhooks (controller/notify/): libcurl's multi interface on the
  # loop; the OpenSSL flavour, as the rest of NIRC uses OpenSSL
  libcurl4-openssl-dev
  # run time: database server, PKI tooling
  postgresql postgresql-client openssl tzdata
  # PBX side: SIP proxy and SIP traffic generator
  kamailio kamailio-extra-modules sip-tester
  # tests and demo: integration scripts, sanitizer runtime, fuzzing
  python3 clang clang-format libclang-rt-14-dev procps iproute2 util-linux
  # man pages and unit files are checked in the suite
  man-db groff-base systemd
  # the status page is checked in a real headless browser
  chromium fonts-wqy-microhei
  # promtool checks the shipped alert rules; the ops-config test reads them
  prometheus python3-yaml
  # bench/ingest.py compares NIRC's ingest with an MQTT broker carrying the
  # same reports; nirc-swarm's MQTT mode is built on libmosquitto
  mosquitto libmosquitto-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: missing packages (${missing[*]}) and not root; run as root or install sudo" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps the postgresql/kamailio/mosquitto packages from starting
# system-wide services on install; NIRC (and bench/ingest.py's broker) starts
# its own private instances.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
