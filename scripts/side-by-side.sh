#!/usr/bin/env bash
# Waymark side by side with its Python peer AbstractRuntime, on this machine,
# in one invocation: the peer's benchmark (bench_abstractruntime.py), then
# Waymark's side of it (`cargo bench --bench peer`), same workloads, same
# sizes, same stores; then one table of the two and their ratio, and a
# second table of per-step cost as the effect chain grows.
#
#   CHAIN_N       pure chain length                       (default 10000)
#   EFFCHAIN_N    effect chain length                     (default 2000)
#   RUNS          ask/answer runs                         (default 1000)
#   SCALE_N       effect chain lengths for Waymark's scaling table, every
#                 store                                   (default 2000,10000,100000)
#   PEER_SCALE_N  the same for the peer, memory store only (default
#                 2000,10000,100000; its per-step cost grows with the run:
#                 100,000 steps take about 2 minutes)
#   PEER_TIMEOUT  seconds allowed to each peer scaling point (default 600);
#                 one that runs longer is stopped and shown as such
#   PEER_BENCH    the peer benchmark script
#                 (default ../shared/peer-bench/bench_abstractruntime.py,
#                 beside the repository)
#   REPORT_ONLY=1 measure nothing: rebuild the tables from the .jsonl files
#
# The peer is installed into a venv at target/peer-venv (abstractruntime
# 0.13.0 from PyPI). Raw results (one JSON object per line) go to
# target/side-by-side/{peer,waymark}.jsonl, the tables to
# target/side-by-side/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."

chain_n="${CHAIN_N:-10000}"
effchain_n="${EFFCHAIN_N:-2000}"
runs="${RUNS:-1000}"
scale_n="${SCALE_N:-2000,10000,100000}"
peer_scale_n="${PEER_SCALE_N:-2000,10000,100000}"
peer_timeout="${PEER_TIMEOUT:-600}"
peer_bench="${PEER_BENCH:-../shared/peer-bench/bench_abstractruntime.py}"
peer_version="0.13.0"

venv="target/peer-venv"
out="target/side-by-side"
mkdir -p "$out"
started=$(date +%s)

# Runs both benchmarks, writing $out/{peer,waymark}.jsonl.
measure() {
    if [[ ! -f "$peer_bench" ]]; then
        echo "side-by-side.sh: peer benchmark not found at $peer_bench (set PEER_BENCH)" >&2
        exit 2
    fi
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "== creating $venv" >&2
        python3 -m venv "$venv"
    fi
    if ! "$venv/bin/python" -c "from importlib.metadata import version; assert version('abstractruntime') == '$peer_version'" 2>/dev/null; then
        echo "== installing abstractruntime==$peer_version" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "abstractruntime==$peer_version"
    fi

    # Waymark first builds (so that compiling does not overlap the peer's run).
    echo "== building the peer bench" >&2
    cargo bench --bench peer --no-run >&2

    load_before=$(cut -d' ' -f1-3 /proc/loadavg)

    echo "== peer: chain $chain_n, effchain $effchain_n, askuser $runs" >&2
    "$venv/bin/python" "$peer_bench" --chain-n "$chain_n" --effchain-n "$effchain_n" --runs "$runs" \
        | tee -a /dev/stderr | grep '^{' >"$out/peer.jsonl"
    for n in ${peer_scale_n//,/ }; do
        [[ "$n" == "$effchain_n" ]] && continue # measured above
        echo "== peer: effchain $n on memory (at most ${peer_timeout}s)" >&2
        if line=$(timeout "$peer_timeout" "$venv/bin/python" "$peer_bench" --one effchain memory "$n"); then
            echo "$line" | tee -a /dev/stderr | grep '^{' >>"$out/peer.jsonl"
        else
            echo "peer effchain $n: stopped after ${peer_timeout}s" >&2
            echo "{\"scenario\": \"effchain\", \"store\": \"memory\", \"n\": $n, \"timed_out_after_s\": $peer_timeout}" >>"$out/peer.jsonl"
        fi
    done

    # Waymark: the same sizes, plus the scaling sizes of the effect chain.
    local eff_sizes
    eff_sizes=$(echo "$effchain_n,$scale_n" | tr ',' '\n' | sed '/^$/d' | sort -nu | paste -sd,)
    echo "== waymark: chain $chain_n, effchain $eff_sizes, askuser $runs" >&2
    cargo bench --bench peer -- --json --chain-n "$chain_n" --effchain-n "$eff_sizes" --runs "$runs" \
        | tee -a /dev/stderr | grep '^{' >"$out/waymark.jsonl"
}

load_before="?"
if [[ "${REPORT_ONLY:-}" != 1 ]]; then
    measure
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(($(date +%s) - started))
if [[ "${REPORT_ONLY:-}" == 1 ]]; then
    elapsed=""
fi

OUT="$out" CHAIN_N="$chain_n" EFFCHAIN_N="$effchain_n" RUNS="$runs" SCALE_N="$scale_n" \
    PEER_SCALE_N="$peer_scale_n" PEER_VERSION="$peer_version" LOAD_BEFORE="$load_before" \
    LOAD_AFTER="$load_after" ELAPSED="$elapsed" PEER_PY="$venv/bin/python" python3 - <<'PY'
import json
import os
import platform
import subprocess

out = os.environ["OUT"]
sizes = {
    "chain": int(os.environ["CHAIN_N"]),
    "effchain": int(os.environ["EFFCHAIN_N"]),
    "askuser": int(os.environ["RUNS"]),
}
scale = {int(n) for n in os.environ["SCALE_N"].split(",") if n}
peer_scale = {int(n) for n in os.environ["PEER_SCALE_N"].split(",") if n}


def load(name):
    rows = {}
    with open(os.path.join(out, name)) as f:
        for line in f:
            if line.startswith("{"):
                r = json.loads(line)
                rows[(r["scenario"], r["store"], r["n"])] = r  # last one wins
    return rows


peer, ours = load("peer.jsonl"), load("waymark.jsonl")


def num(x, places=0):
    return f"{x:,.{places}f}"


def mib(r):
    return num(r["peak_rss_mb"], 1) if r and "peak_rss_mb" in r else "–"


def disk(r):
    if not r or "disk_bytes" not in r:
        return "–"
    b = r["disk_bytes"]
    if b < 1e6:
        return f"{b / 1e3:,.0f} kB"
    return f"{b / 1e6:,.1f} MB"


def records(r):
    if r and "ledger_records" in r:
        return num(r["ledger_records"])
    if r and "ledger_records_per_run" in r:
        return f"{r['ledger_records_per_run']} per run"
    return "–"


lines = []
p = lines.append
cpu = "?"
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
except (OSError, StopIteration):
    pass
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
peer_py = subprocess.run([os.environ["PEER_PY"], "--version"], capture_output=True, text=True).stdout.strip()
p(f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}; "
  f"load average {os.environ['LOAD_BEFORE']} before, {os.environ['LOAD_AFTER']} after.")
p(f"Peer: abstractruntime {os.environ['PEER_VERSION']} ({peer_py}). Waymark: {rustc}, "
  "`cargo bench --bench peer` (release), real WASM components, a fresh instance per step.")
p("Each (workload, store) ran once, in its own process, on a fresh store; "
  "\"json\" is the peer's JsonFileRunStore + JsonlLedgerStore and Waymark's FileStore. "
  "Waymark writes one ledger record per step and commits at durability points (every 64 steps of a chain at most, before effects, waits and the end); the peer checkpoints a pure "
  "chain only at the end of its tick and writes two ledger records per effect.")
p("")
p("| workload | store | peer | Waymark | Waymark / peer | ledger records (peer / Waymark) | peak RSS MiB (peer / Waymark) | on disk (peer / Waymark) |")
p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for sc, unit, key in [("chain", "steps/s", "steps_per_s"), ("effchain", "steps/s", "steps_per_s"),
                      ("askuser", "runs/s", "runs_per_s")]:
    n = sizes[sc]
    for st in ["memory", "json", "sqlite"]:
        a, b = peer.get((sc, st, n)), ours.get((sc, st, n))
        if a is None and b is None:
            continue
        fa = num(a[key]) if a and key in a else "–"
        fb = num(b[key]) if b and key in b else "–"
        ratio = f"{b[key] / a[key]:,.2f}×" if a and b and key in a and key in b else "–"
        p(f"| {sc} {n:,} ({unit}) | {st} | {fa} | {fb} | {ratio} | {records(a)} / {records(b)} "
          f"| {mib(a)} / {mib(b)} | {disk(a)} / {disk(b)} |")
table1 = list(lines)

lines.clear()
p("Effect chain (every step requests answer_user, result at `_temp.last`), cost per step "
  "in µs (steps/s in brackets) as the run grows; flat means a step costs the same "
  "wherever it is in the run.")
p("")
p("| steps | Waymark memory | Waymark json | Waymark sqlite | peer memory | peak RSS MiB, memory (peer / Waymark) |")
p("| ---: | ---: | ---: | ---: | ---: | ---: |")


def cell(r):
    if r is None:
        return "–"
    if "timed_out_after_s" in r:
        return f"stopped after {r['timed_out_after_s']} s"
    us = 1e6 * r["seconds"] / (r["n"] + 1)
    return f"{us:,.1f} ({num(r['steps_per_s'])})"


for n in sorted(scale | peer_scale):
    row = [cell(ours.get(("effchain", st, n))) for st in ["memory", "json", "sqlite"]]
    if n in peer_scale:
        row.append(cell(peer.get(("effchain", "memory", n))))
    else:
        row.append("not run")
    row.append(f"{mib(peer.get(('effchain', 'memory', n)))} / {mib(ours.get(('effchain', 'memory', n)))}")
    p(f"| {n:,} | " + " | ".join(row) + " |")
skipped = sorted(n for n in scale if n not in peer_scale)
if skipped:
    p("")
    p(f"The peer was not run at {', '.join(f'{n:,}' for n in skipped)} steps "
      "(PEER_SCALE_N leaves it out).")
table2 = list(lines)

elapsed = os.environ["ELAPSED"]
timing = f"Whole script: {int(elapsed) // 60} min {int(elapsed) % 60} s. " if elapsed else ""
report = ["# Waymark and AbstractRuntime, side by side", ""] + table1 + ["", "## Effect chain as the run grows", ""] + table2
if timing:
    report += ["", timing.strip()]
with open(os.path.join(out, "report.md"), "w") as f:
    f.write("\n".join(report) + "\n")
print("\n".join(table1))
print()
print("\n".join(table2))
print()
print(f"{timing}Raw results in {out}/{{peer,waymark}}.jsonl, report in {out}/report.md")
PY
