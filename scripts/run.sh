#!/usr/bin/env bash
# Builds Rescope and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh build
cargo build --release --locked -p rescope
bin=target/release/rescope
if "$bin" help launch >/dev/null 2>&1; then
    exec "$bin" launch "$@"
fi
echo
echo "rescope launch (probe, app and UI on http://localhost:4040) is not built yet."
echo "Available now:"
echo
"$bin" --help
