#!/usr/bin/env bash
# Installs what building and testing Rescope needs on Debian, skipping what is present.
# Safe to run repeatedly. Needs root (or sudo) only when something is missing.
#
#   setup-deps.sh build   what building and running needs
#   setup-deps.sh test    also what the test suite needs (default)
set -euo pipefail
mode="${1:-test}"

want_apt=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || want_apt+=("$2"); }

need_cmd cc build-essential
need_cmd pkg-config pkg-config
if [[ "$mode" == test ]]; then
    need_cmd dockerd docker.io
    [[ -x /bin/busybox || -x /usr/bin/busybox ]] || want_apt+=(busybox-static)
    need_cmd python3 python3
    # Network namespace, NAT and capability tests of the connection collector.
    need_cmd ip iproute2
    need_cmd nft nftables
    need_cmd setpriv util-linux
    # The web UI's end-to-end tests drive Debian's chromium through playwright-core.
    need_cmd chromium chromium
    # The BPF objects (the http-statistics plugin's, the probe's TCP change tracker)
    # are compiled from C with clang (CO-RE, kernel BTF).
    need_cmd clang clang
    # llvm-strip makes the rebuilt object byte-identical to the committed one.
    need_cmd llvm-strip llvm
    # The HTTPS tests make their certificate with openssl.
    need_cmd openssl openssl
fi

if ((${#want_apt[@]})); then
    echo "setup-deps: installing Debian packages: ${want_apt[*]}"
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "setup-deps: need root to install ${want_apt[*]}" >&2; exit 1; }
        sudo_cmd=(sudo)
    fi
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${want_apt[@]}" >/dev/null
fi

[[ "$mode" == test ]] || exit 0

# The container tests need a running Docker engine.
if ! docker info >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v dockerd >/dev/null; then
        echo "setup-deps: starting dockerd"
        (dockerd >/tmp/rescope-dockerd.log 2>&1 &)
        for _ in $(seq 1 60); do
            docker info >/dev/null 2>&1 && break
            sleep 0.5
        done
        docker info >/dev/null 2>&1 || { echo "setup-deps: dockerd did not start; see /tmp/rescope-dockerd.log" >&2; tail -20 /tmp/rescope-dockerd.log >&2; }
    else
        echo "setup-deps: no Docker engine and not root: container tests will be skipped"
    fi
fi

if [[ "${RESCOPE_FUZZ_SECONDS:-20}" != 0 ]] && ! cargo fuzz --version >/dev/null 2>&1; then
    echo "setup-deps: installing cargo-fuzz"
    cargo install cargo-fuzz --version 0.13.2 --locked -q
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup-deps: installing cargo-nextest"
    cargo install cargo-nextest --locked -q
fi
