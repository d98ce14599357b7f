#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit, property, golden and
# integration tests, doc tests, the web UI's unit and end-to-end tests (real Chromium
# against a real `rescope launch`), and a bounded fuzz run of the report decoders.
#
#   RESCOPE_FUZZ_SECONDS=N   seconds per fuzz target (default 20; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
scripts/setup-deps.sh test

step "web UI: type check and build"
scripts/build-web.sh

step "formatting"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --locked --doc

step "web UI: unit tests"
(cd web && npx vitest run)

step "web UI: end-to-end tests in Chromium"
# The binaries the tests above built (same features, so nothing is rebuilt).
cargo test --workspace --locked --no-run
(cd web && node e2e/run.mjs)

fuzz_seconds="${RESCOPE_FUZZ_SECONDS:-20}"
if [[ "$fuzz_seconds" != 0 ]]; then
    step "fuzzing report decoders (${fuzz_seconds}s per target)"
    (
        cd fuzz
        for target in decode_msgpack decode_json decode_any; do
            mkdir -p "corpus/$target"
            log="$(mktemp)"
            if ! cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
                -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
                tail -n 40 "$log" >&2
                echo "fuzz target $target found a failure (artifacts in fuzz/artifacts/$target)" >&2
                exit 1
            fi
            echo "$target: $(grep -E '^Done' "$log" || echo 'no summary')"
            rm -f "$log"
        done
    )
fi

step "all test tiers passed"
