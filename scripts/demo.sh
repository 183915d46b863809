#!/usr/bin/env bash
# The quick start, end to end, on the embedded SQLite default (.waymark/):
# build the example guest into a component, start a run that waits for an
# answer (process 1), look at it (process 2), answer it (process 3).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin waymark
waymark=target/debug/waymark

echo "== build the quickstart guest (Rust -> wasm32 -> component)"
$waymark build quickstart-guest --out target/components

echo
echo "== process 1: start the run; it stops at the 'ask' node and waits"
run_id=$($waymark run target/components/quickstart-guest.wasm --print-id)

echo
echo "== process 2: the wait is durable; any process can read it"
$waymark status "$run_id"

echo
echo "== process 3: answer it; the run resumes at 'done' (ask is not re-run)"
$waymark respond "$run_id" --text yes

echo
echo "== the ledger and its hash chain"
$waymark ledger "$run_id"
$waymark verify "$run_id"
