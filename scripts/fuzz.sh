#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ on the nightly toolchain.
#
#   FUZZ_SECONDS  time per target (default 60)
#   FUZZ_TARGETS  targets to run (default: all of them)
#
# New inputs libFuzzer finds go to fuzz/target/corpus/<target> (ignored by
# git); the checked-in seeds in fuzz/corpus/<target> are only read. A crash
# leaves its input in fuzz/artifacts/<target> and makes this script exit 1
# after the remaining targets have run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: a nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-$(cargo fuzz list | tr "\n" " ")}"
failed=()
for target in $targets; do
    work="fuzz/target/corpus/$target"
    seeds="fuzz/corpus/$target"
    mkdir -p "$work" "$seeds"
    echo "== fuzzing $target for ${seconds}s"
    if ! cargo +nightly fuzz run "$target" "$work" "$seeds" -- \
        -max_total_time="$seconds" -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz.sh: crash in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: no crash in $targets"
