#!/usr/bin/env bash
# Builds Rescope (web UI included) and runs `rescope launch`: the probe, the app and the
# UI on http://localhost:4040. Extra arguments go to `rescope launch`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh build
if ! scripts/build-web.sh; then
    echo "run: continuing without the web UI; http://localhost:4040 will say how to build it" >&2
fi
cargo build --release --locked -p rescope
exec target/release/rescope launch "$@"
