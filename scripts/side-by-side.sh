#!/usr/bin/env bash
# Waymark side by side with its Python peer AbstractRuntime, on this machine,
# in one invocation. Both sides run the same workloads on the same stores at
# the same sizes: the peer through benches/peer/abstractruntime.py, Waymark
# through the compiled `peer` bench (benches/peer.rs). Every measurement is a
# fresh process on a fresh store, and the two sides take turns: for each
# (workload, store) the script measures PAIRS pairs, a pair being one peer
# run and one Waymark run right after each other (odd pairs peer first, even
# pairs Waymark first, so that a steady drift in the machine's load does not
# always favour the same side). The report gives, per (workload, store), each
# side's median, the median of the per-pair ratios Waymark / peer and their
# spread (min–max); a second table gives the effect chain's cost per step as
# the run grows, alternating the same way where both sides are measured.
#
#   CHAIN_N       pure chain length                       (default 10000)
#   EFFCHAIN_N    effect chain length                     (default 2000)
#   RUNS          ask/answer runs                         (default 1000)
#   PAIRS         peer/Waymark pairs per (workload, store) (default 3)
#   SCALE_N       effect chain lengths for Waymark's scaling table, every
#                 store                                   (default 2000,10000,100000)
#   PEER_SCALE_N  the same for the peer, memory store only (default
#                 2000,10000,100000; its per-step cost grows with the run:
#                 100,000 steps take about 2 minutes)
#   SCALE_PAIRS   pairs per point of the scaling table    (default PAIRS)
#   PEER_TIMEOUT  seconds allowed to each peer scaling run (default 600);
#                 one that runs longer is stopped and shown as such, and
#                 the peer is not run again at that size
#   PEER_BENCH    the peer benchmark script (default
#                 benches/peer/abstractruntime.py)
#   PEER_VENV     the peer's virtualenv (default target/peer-venv; created,
#                 and abstractruntime 0.13.0 installed from PyPI, if missing)
#   WAYMARK_PEER_BENCH_BIN
#                 Waymark's side as an executable taking
#                 `--bench --one SCENARIO STORE N` and printing one JSON
#                 line; when set, nothing is built. By default the script
#                 builds the bench once (`cargo bench --bench peer --no-run`,
#                 release) and runs the executable cargo reports. Pointing
#                 this at a stub tests the script without a Rust build.
#   SIDE_BY_SIDE_OUT
#                 where the raw results and the report go (default
#                 target/side-by-side)
#   REPORT_ONLY=1 measure nothing: rebuild the tables from the .jsonl files
#
# Relative paths in these settings are taken from the repository root.
# Raw results (one JSON object per line, the peer's field names plus `pair`)
# go to target/side-by-side/{peer,waymark}.jsonl, the tables to
# target/side-by-side/report.md. With the defaults the whole script takes
# about 10 minutes, most of it the peer's 100,000-step effect chains
# (PEER_SCALE_N=2000,10000 or SCALE_PAIRS=1 shortens it).
set -euo pipefail
cd "$(dirname "$0")/.."

chain_n="${CHAIN_N:-10000}"
effchain_n="${EFFCHAIN_N:-2000}"
runs="${RUNS:-1000}"
pairs="${PAIRS:-3}"
scale_n="${SCALE_N:-2000,10000,100000}"
peer_scale_n="${PEER_SCALE_N:-2000,10000,100000}"
scale_pairs="${SCALE_PAIRS:-$pairs}"
peer_timeout="${PEER_TIMEOUT:-600}"
peer_bench="${PEER_BENCH:-benches/peer/abstractruntime.py}"
venv="${PEER_VENV:-target/peer-venv}"
waymark_bin="${WAYMARK_PEER_BENCH_BIN:-}"
peer_version="0.13.0"

out="${SIDE_BY_SIDE_OUT:-target/side-by-side}"
mkdir -p "$out"
started=$(date +%s)

for setting in chain_n effchain_n runs pairs scale_pairs peer_timeout; do
    if ! [[ "${!setting}" =~ ^[1-9][0-9]*$ ]]; then
        echo "side-by-side.sh: ${setting^^} must be a whole number of at least 1, not '${!setting}'" >&2
        exit 2
    fi
done
for setting in scale_n peer_scale_n; do
    if ! [[ "${!setting}" =~ ^([1-9][0-9]*)?(,[1-9][0-9]*)*$ ]]; then
        echo "side-by-side.sh: ${setting^^} must be sizes separated by commas, not '${!setting}'" >&2
        exit 2
    fi
done

# The peer's venv, with the pinned abstractruntime in it.
prepare_peer() {
    if [[ ! -f "$peer_bench" ]]; then
        echo "side-by-side.sh: peer benchmark not found at $peer_bench (set PEER_BENCH)" >&2
        exit 2
    fi
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "== creating $venv" >&2
        python3 -m venv "$venv"
    fi
    if ! "$venv/bin/python" -c "from importlib.metadata import version; assert version('abstractruntime') == '$peer_version'" 2>/dev/null; then
        echo "== installing abstractruntime==$peer_version into $venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "abstractruntime==$peer_version"
    fi
}

# Builds Waymark's bench once (so that compiling overlaps no measurement)
# and sets waymark_bin to the executable cargo built.
prepare_waymark() {
    if [[ -n "$waymark_bin" ]]; then
        if [[ ! -x "$waymark_bin" ]]; then
            echo "side-by-side.sh: WAYMARK_PEER_BENCH_BIN=$waymark_bin is not an executable" >&2
            exit 2
        fi
        echo "== Waymark's side: $waymark_bin (WAYMARK_PEER_BENCH_BIN, not built)" >&2
        return
    fi
    echo "== building Waymark's peer bench (release)" >&2
    waymark_bin=$(cargo bench --bench peer --no-run --message-format=json-render-diagnostics |
        python3 -c '
import json, sys
found = ""
for line in sys.stdin:
    try:
        message = json.loads(line)
    except ValueError:
        continue
    target = message.get("target") or {}
    if (message.get("reason") == "compiler-artifact" and target.get("name") == "peer"
            and "bench" in target.get("kind", []) and message.get("executable")):
        found = message["executable"]
print(found)
')
    if [[ -z "$waymark_bin" || ! -x "$waymark_bin" ]]; then
        echo "side-by-side.sh: cargo did not report the peer bench's executable" >&2
        exit 1
    fi
    echo "== Waymark's side: $waymark_bin" >&2
}

# run_side SIDE SCENARIO STORE N PAIR [TIMEOUT]: one measurement in a fresh
# process; appends its JSON line, with "pair" added, to $out/SIDE.jsonl.
# Returns 3 if the run was stopped at TIMEOUT seconds (recorded as such);
# any other failure ends the script.
run_side() {
    local side=$1 scenario=$2 store=$3 n=$4 pair=$5 limit=${6:-}
    local -a command
    if [[ "$side" == peer ]]; then
        command=("$venv/bin/python" "$peer_bench" --one "$scenario" "$store" "$n")
    else
        command=("$waymark_bin" --bench --one "$scenario" "$store" "$n")
    fi
    if [[ -n "$limit" ]]; then
        command=(timeout "$limit" "${command[@]}")
    fi
    echo "== pair $pair: $side $scenario $store $n" >&2
    local output status=0
    output=$("${command[@]}") || status=$?
    if [[ -n "$limit" && "$status" == 124 ]]; then
        echo "   $side $scenario $store $n: stopped after ${limit}s" >&2
        echo "{\"scenario\": \"$scenario\", \"store\": \"$store\", \"n\": $n, \"timed_out_after_s\": $limit, \"pair\": $pair}" \
            >>"$out/$side.jsonl"
        return 3
    fi
    local line
    line=$(printf '%s\n' "$output" | grep '^{' | tail -n 1) || true
    if [[ "$status" != 0 || "$line" != *"}" ]]; then
        echo "side-by-side.sh: $side $scenario $store $n failed (exit status $status)" >&2
        [[ -z "$output" ]] || printf '%s\n' "$output" | tail -n 20 >&2
        exit 1
    fi
    line="${line%\}}, \"pair\": $pair}"
    echo "   $line" >&2
    printf '%s\n' "$line" >>"$out/$side.jsonl"
}

# measure_pairs SCENARIO STORE N COUNT SIDES [PEER_TIMEOUT]: COUNT pairs of
# the sides named in SIDES ("peer waymark", or one of them), each pair in
# alternating order. Once the peer is stopped at its timeout, the later
# pairs run Waymark only.
measure_pairs() {
    local scenario=$1 store=$2 n=$3 count=$4 sides=$5 limit=${6:-}
    local pair side peer_stopped=0
    for ((pair = 1; pair <= count; pair++)); do
        local order="peer waymark"
        ((pair % 2 == 0)) && order="waymark peer"
        for side in $order; do
            [[ " $sides " == *" $side "* ]] || continue
            if [[ "$side" == peer ]]; then
                ((peer_stopped)) && continue
                run_side peer "$scenario" "$store" "$n" "$pair" "$limit" || peer_stopped=1
            else
                run_side waymark "$scenario" "$store" "$n" "$pair"
            fi
        done
    done
}

# Both sides, written to $out/{peer,waymark}.jsonl.
measure() {
    prepare_peer
    prepare_waymark
    : >"$out/peer.jsonl"
    : >"$out/waymark.jsonl"
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)

    # The main table: every workload on every store, both sides.
    local scenario store n
    for scenario in chain effchain askuser; do
        case $scenario in
            chain) n=$chain_n ;;
            effchain) n=$effchain_n ;;
            askuser) n=$runs ;;
        esac
        for store in memory json sqlite; do
            measure_pairs "$scenario" "$store" "$n" "$pairs" "peer waymark"
        done
    done

    # The scaling table: the effect chain at more sizes, Waymark on every
    # store (SCALE_N), the peer on memory (PEER_SCALE_N, with a timeout).
    # The size of the main table is not measured again.
    local sizes sides
    sizes=$(printf '%s\n' ${scale_n//,/ } ${peer_scale_n//,/ } | sort -nu)
    for n in $sizes; do
        [[ "$n" == "$effchain_n" ]] && continue
        for store in memory json sqlite; do
            sides=""
            [[ ",$scale_n," == *",$n,"* ]] && sides="waymark"
            [[ "$store" == memory && ",$peer_scale_n," == *",$n,"* ]] && sides="peer $sides"
            [[ -n "$sides" ]] || continue
            measure_pairs effchain "$store" "$n" "$scale_pairs" "$sides" "$peer_timeout"
        done
    done
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
    LOAD_AFTER="$load_after" ELAPSED="$elapsed" PEER_PY="$venv/bin/python" PEER_BENCH="$peer_bench" python3 - <<'PY'
import json
import os
import platform
import statistics
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
    """{(scenario, store, n): {pair: row}} from one .jsonl file."""
    rows = {}
    path = os.path.join(out, name)
    if not os.path.exists(path):
        print(f"side-by-side: {path} is missing; its side is left empty")
        return rows
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            key = (r["scenario"], r["store"], r["n"])
            by_pair = rows.setdefault(key, {})
            # Results written before pairs existed count as pairs 1, 2, ...
            pair = r.get("pair", len(by_pair) + 1)
            by_pair[pair] = r  # a pair measured twice: the last one wins
    return rows


peer, ours = load("peer.jsonl"), load("waymark.jsonl")


def done(rows):
    """The runs that finished (not stopped at the timeout)."""
    return {pair: r for pair, r in (rows or {}).items() if "timed_out_after_s" not in r}


def median_of(rows, field):
    values = [r[field] for r in done(rows).values() if field in r]
    return statistics.median(values) if values else None


def ratios(peer_rows, our_rows, field):
    """Waymark's figure over the peer's, pair by pair (pairs with both)."""
    a, b = done(peer_rows), done(our_rows)
    return [b[k][field] / a[k][field] for k in sorted(a.keys() & b.keys())
            if field in a[k] and field in b[k] and a[k][field] > 0]


def num(x, places=0):
    return "–" if x is None else f"{x:,.{places}f}"


def times(x):
    return "–" if x is None else f"{x:,.2f}×"


def spread(rs):
    return f"{min(rs):,.2f}–{max(rs):,.2f}×" if rs else "–"


def mib(rows):
    return num(median_of(rows, "peak_rss_mb"), 1)


def disk(rows):
    b = median_of(rows, "disk_bytes")
    if b is None:
        return "–"
    if b < 1e6:
        return f"{b / 1e3:,.0f} kB"
    return f"{b / 1e6:,.1f} MB"


def records(rows):
    total = median_of(rows, "ledger_records")
    if total is not None:
        return num(total)
    per_run = median_of(rows, "ledger_records_per_run")
    if per_run is not None:
        return f"{num(per_run)} per run"
    return "–"


def version_of(command):
    try:
        return subprocess.run(command, capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        return "?"


lines = []
p = lines.append
cpu = "?"
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
except (OSError, StopIteration):
    pass
p(f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}; "
  f"load average {os.environ['LOAD_BEFORE']} before, {os.environ['LOAD_AFTER']} after.")
p(f"Peer: abstractruntime {os.environ['PEER_VERSION']} ({version_of([os.environ['PEER_PY'], '--version'])}), "
  f"`{os.environ['PEER_BENCH']}`. Waymark: {version_of(['rustc', '--version'])}, the `peer` bench "
  "(benches/peer.rs, release), real WASM components, a fresh instance per step.")
p("Each measurement is a fresh process on a fresh store. For each (workload, store) the two sides "
  "ran in pairs, one right after the other (odd pairs the peer first, even pairs Waymark first); "
  "a side's figure is the median over its runs, \"Waymark / peer\" is the median of the per-pair "
  "ratios and \"spread\" their lowest and highest. "
  "\"json\" is the peer's JsonFileRunStore + JsonlLedgerStore and Waymark's FileStore. "
  "Waymark writes one ledger record per step and commits at durability points (every 64 steps of a chain at most, before effects, waits and the end); the peer checkpoints a pure "
  "chain only at the end of its tick and writes two ledger records per effect.")
p("")
p("| workload | store | peer | Waymark | Waymark / peer | spread | pairs | ledger records (peer / Waymark) | peak RSS MiB (peer / Waymark) | on disk (peer / Waymark) |")
p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for sc, unit, key in [("chain", "steps/s", "steps_per_s"), ("effchain", "steps/s", "steps_per_s"),
                      ("askuser", "runs/s", "runs_per_s")]:
    n = sizes[sc]
    for st in ["memory", "json", "sqlite"]:
        a, b = peer.get((sc, st, n)), ours.get((sc, st, n))
        if a is None and b is None:
            continue
        rs = ratios(a, b, key)
        ratio = statistics.median(rs) if rs else None
        p(f"| {sc} {n:,} ({unit}) | {st} | {num(median_of(a, key))} | {num(median_of(b, key))} "
          f"| {times(ratio)} | {spread(rs)} | {len(rs)} | {records(a)} / {records(b)} "
          f"| {mib(a)} / {mib(b)} | {disk(a)} / {disk(b)} |")
table1 = list(lines)

lines.clear()
p("Effect chain (every step requests answer_user, result at `_temp.last`), cost per step "
  "in µs (steps/s in brackets), medians over the runs at each size, as the run grows; flat "
  "means a step costs the same wherever it is in the run. On memory the two sides ran in "
  "pairs as above.")
p("")
p("| steps | Waymark memory | Waymark json | Waymark sqlite | peer memory | Waymark / peer, memory (spread, pairs) | peak RSS MiB, memory (peer / Waymark) |")
p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")


def cell(rows):
    if not rows:
        return "–"
    finished = done(rows)
    stopped = [r for r in rows.values() if "timed_out_after_s" in r]
    if not finished:
        return f"stopped after {stopped[0]['timed_out_after_s']} s"
    seconds = median_of(rows, "seconds")
    n = next(iter(finished.values()))["n"]
    text = f"{1e6 * seconds / (n + 1):,.1f} ({num(median_of(rows, 'steps_per_s'))})"
    if stopped:
        text += f", {len(stopped)} of {len(rows)} stopped after {stopped[0]['timed_out_after_s']} s"
    return text


not_run = set()
for n in sorted(scale | peer_scale):
    row = [cell(ours.get(("effchain", st, n))) for st in ["memory", "json", "sqlite"]]
    a, b = peer.get(("effchain", "memory", n)), ours.get(("effchain", "memory", n))
    if a is None and n not in peer_scale and n != sizes["effchain"]:
        row.append("not run")
        not_run.add(n)
    else:
        row.append(cell(a))
    rs = ratios(a, b, "steps_per_s")
    row.append(f"{times(statistics.median(rs))} ({spread(rs)}, {len(rs)})" if rs else "–")
    row.append(f"{mib(a)} / {mib(b)}")
    p(f"| {n:,} | " + " | ".join(row) + " |")
if not_run:
    p("")
    p(f"The peer was not run at {', '.join(f'{n:,}' for n in sorted(not_run))} steps "
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
