#!/usr/bin/env bash
# Builds the web UI into web/dist, which the app embeds (release builds) or reads
# (debug builds). Installs the npm packages from the lockfile when they changed.
#
#   build-web.sh           install if needed, then build
#   RESCOPE_WEB=skip       do nothing (the app then shows how to build the UI)
set -euo pipefail
cd "$(dirname "$0")/../web"

if [[ "${RESCOPE_WEB:-}" == skip ]]; then
    echo "build-web: skipped (RESCOPE_WEB=skip)"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "build-web: npm not found; install Node.js 20.19 or newer to build the web UI." >&2
    echo "build-web: the app still runs and serves the API; / explains how to build the UI." >&2
    exit 1
fi

# `npm ci` only when the lockfile is newer than the last install.
stamp=node_modules/.rescope-installed
if [[ ! -f "$stamp" || package-lock.json -nt "$stamp" ]]; then
    echo "build-web: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
    touch "$stamp"
fi
echo "build-web: vite build"
npm run --silent build
