#!/usr/bin/env bash
# Installs the system packages waihu needs when they are missing (Debian/Ubuntu):
# libopus-dev and pkg-config for the opus crate, and sip-tester (SIPp) for the SIP interop
# tests, GNU time for the benchmark scripts, baresip-core (a real agent softphone) for the
# agent tests. Idempotent; quiet when all is there.
set -euo pipefail
need=()
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
[ -x /usr/bin/time ] || need+=(time)  # GNU time: the benchmark scripts' peak RSS
command -v baresip >/dev/null 2>&1 || need+=(baresip-core)  # the agent softphone in the agent tests
if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi
echo "waihu: installing missing system packages: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "waihu: need root or sudo to install ${need[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
command -v apt-get >/dev/null 2>&1 || { echo "waihu: no apt-get; install ${need[*]} by hand" >&2; exit 1; }
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
