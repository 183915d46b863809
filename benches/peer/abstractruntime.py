#!/usr/bin/env python3
"""The peer's side of Waymark's peer benchmark: AbstractRuntime 0.13.0.

Waymark's `benches/peer.rs` and this script run the same three workloads on
the same three kinds of store, so that `scripts/side-by-side.sh` can set
their figures side by side as ratios measured on one machine.

Workloads (N and R are sizes given on the command line):

  chain N     one run through nodes n0 .. n(N-1), then `end`; every node adds
              one to vars["counter"] and names the next node, `end` completes
              with {"counter": N}. N + 1 steps, all in one tick
              (max_steps = N + 10). Reported as steps_per_s.
  effchain N  the same run, but every counting node also requests the
              ANSWER_USER effect with payload {"message": "step <i>"} and
              result key "_temp.last", so every step goes through the
              runtime's effect path and its ledger. Reported as steps_per_s.
  askuser R   R runs of a two-node workflow: `ask` requests ASK_USER
              (payload {"prompt": "name?"}, result key "answer") and the run
              waits; it is resumed with {"text": "u<i>"} and `done` completes
              with {"answer": <the answer>}. Reported as runs_per_s and
              ms_per_run.

Stores:

  memory      InMemoryRunStore + InMemoryLedgerStore
  json        JsonFileRunStore + JsonlLedgerStore sharing one directory
  sqlite      SqliteRunStore + SqliteLedgerStore over one SqliteDatabase

The timed part is start + tick for the chains and the whole
start/tick/resume loop for askuser; building the workflow, reading the
ledger and sizing the vars happen outside it. Each (scenario, store, N) is
measured in a process of its own (peak RSS is then the scenario's own) on a
fresh store in a new temporary directory, which is removed afterwards.

Output: one JSON object per line with the fields scenario, store, n,
seconds, steps_per_s (chains) or runs_per_s and ms_per_run (askuser),
ledger_records and final_vars_bytes (chains), ledger_records_per_run
(askuser, the ledger of its last run), disk_bytes (the store directory
with the stores still open), rss_before_mb (resident MiB once the runtime
exists, before the workload) and peak_rss_mb (the process's peak). Other
lines begin with "#".

  abstractruntime.py                                   every scenario x store
  abstractruntime.py --chain-n 10000 --effchain-n 2000,10000 --runs 1000
  abstractruntime.py --stores sqlite --scenarios askuser
  abstractruntime.py --one effchain memory 2000        one measurement, here
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# This file is named after the library it measures, and Python puts the
# directory of the script it runs first on the import path: without this,
# `import abstractruntime` would import this file again.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]

SCENARIOS = ("chain", "effchain", "askuser")
STORES = ("memory", "json", "sqlite")
DEFAULT_SIZES = {"chain": 10_000, "effchain": 2_000, "askuser": 1_000}


class BenchFailure(RuntimeError):
    """A workload ended differently from how it must end."""


# --- process figures ----------------------------------------------------


def _status_mib(field: str) -> float | None:
    """A `/proc/self/status` figure (given in kB) in MiB, if there is one."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def resident_mib() -> float:
    now = _status_mib("VmRSS:")
    return now if now is not None else peak_resident_mib()


def peak_resident_mib() -> float:
    peak = _status_mib("VmHWM:")
    if peak is not None:
        return peak
    # ru_maxrss is in KiB on Linux (bytes on macOS, where this is only a
    # rough figure anyway).
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024.0 * 1024.0) if sys.platform == "darwin" else kib / 1024.0


def bytes_under(directory: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass  # a file that went away between listing and stat
    return total


# --- stores and workflows -----------------------------------------------


def open_stores(kind: str, directory: str):
    """(run store, ledger store) of the given kind, rooted in `directory`."""
    import abstractruntime as ar

    if kind == "memory":
        return ar.InMemoryRunStore(), ar.InMemoryLedgerStore()
    if kind == "json":
        return ar.JsonFileRunStore(directory), ar.JsonlLedgerStore(directory)
    if kind == "sqlite":
        database = ar.SqliteDatabase(os.path.join(directory, "runtime.sqlite3"))
        return ar.SqliteRunStore(database), ar.SqliteLedgerStore(database)
    raise ValueError(f"unknown store {kind!r}")


def chain_workflow(n: int, with_effect: bool):
    """The counting chain: n0 .. n(n-1), then `end`."""
    from abstractruntime import Effect, EffectType, StepPlan, WorkflowSpec

    def counting_node(index: int):
        node_id = f"n{index}"
        successor = f"n{index + 1}" if index + 1 < n else "end"
        label = f"step {index}"

        if with_effect:

            def step(run, ctx):
                run.vars["counter"] = run.vars.get("counter", 0) + 1
                request = Effect(
                    type=EffectType.ANSWER_USER,
                    payload={"message": label},
                    result_key="_temp.last",
                )
                return StepPlan(node_id=node_id, effect=request, next_node=successor)

        else:

            def step(run, ctx):
                run.vars["counter"] = run.vars.get("counter", 0) + 1
                return StepPlan(node_id=node_id, next_node=successor)

        return node_id, step

    nodes = dict(counting_node(i) for i in range(n))

    def end(run, ctx):
        return StepPlan(node_id="end", complete_output={"counter": run.vars.get("counter")})

    nodes["end"] = end
    kind = "effchain" if with_effect else "chain"
    return WorkflowSpec(workflow_id=f"{kind}_{n}", entry_node="n0", nodes=nodes)


def ask_workflow():
    """`ask` waits for the user, `done` completes with the answer."""
    from abstractruntime import Effect, EffectType, StepPlan, WorkflowSpec

    def ask(run, ctx):
        question = Effect(
            type=EffectType.ASK_USER, payload={"prompt": "name?"}, result_key="answer"
        )
        return StepPlan(node_id="ask", effect=question, next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"answer": run.vars.get("answer")})

    return WorkflowSpec(workflow_id="askuser", entry_node="ask", nodes={"ask": ask, "done": done})


# --- one measurement ----------------------------------------------------


def vars_bytes(variables) -> int:
    """Size of the vars as the stores serialise them (compact JSON)."""
    try:
        from abstractruntime.storage.serialize import dumps_compact
    except ImportError:  # another version of the library: plain compact JSON
        text = json.dumps(variables, separators=(",", ":"), ensure_ascii=False, default=str)
    else:
        text = dumps_compact(variables)
    return len(text.encode("utf-8"))


def time_chain(runtime, n: int, with_effect: bool) -> dict:
    from abstractruntime import RunStatus

    workflow = chain_workflow(n, with_effect)
    started = time.perf_counter()
    run_id = runtime.start(workflow=workflow, vars={"counter": 0})
    state = runtime.tick(workflow=workflow, run_id=run_id, max_steps=n + 10)
    seconds = time.perf_counter() - started
    if state.status != RunStatus.COMPLETED:
        raise BenchFailure(f"chain ended {state.status}: {getattr(state, 'error', None)}")
    if state.output != {"counter": n}:
        raise BenchFailure(f"chain output {state.output!r}, expected counter {n}")
    return {
        "seconds": round(seconds, 3),
        "steps_per_s": round((n + 1) / seconds, 1),
        "ledger_records": len(runtime.get_ledger(run_id)),
        "final_vars_bytes": vars_bytes(state.vars),
    }


def time_askuser(runtime, runs: int) -> dict:
    from abstractruntime import RunStatus

    workflow = ask_workflow()
    last_run = None
    started = time.perf_counter()
    for i in range(runs):
        run_id = runtime.start(workflow=workflow, vars={"i": i})
        state = runtime.tick(workflow=workflow, run_id=run_id)
        if state.status != RunStatus.WAITING:
            raise BenchFailure(f"run {i} did not wait: {state.status}")
        state = runtime.resume(
            workflow=workflow,
            run_id=run_id,
            wait_key=state.waiting.wait_key,
            payload={"text": f"u{i}"},
        )
        if state.status != RunStatus.COMPLETED:
            raise BenchFailure(f"run {i} ended {state.status} after its answer")
        last_run = run_id
    seconds = time.perf_counter() - started
    figures = {
        "seconds": round(seconds, 3),
        "runs_per_s": round(runs / seconds, 1),
        "ms_per_run": round(1000.0 * seconds / runs, 3),
    }
    if last_run is not None:
        figures["ledger_records_per_run"] = len(runtime.get_ledger(last_run))
    return figures


def measure_one(scenario: str, store: str, n: int) -> dict:
    """Measures (scenario, store, n) in this process; returns its JSON object."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    if store not in STORES:
        raise ValueError(f"unknown store {store!r} (known: {', '.join(STORES)})")
    if n < 1:
        raise ValueError("the size must be at least 1")
    # The library logs through `logging`; keep that out of the timings.
    logging.disable(logging.WARNING)
    from abstractruntime import Runtime

    directory = tempfile.mkdtemp(prefix=f"peer-{scenario}-{store}-")
    try:
        run_store, ledger_store = open_stores(store, directory)
        runtime = Runtime(run_store=run_store, ledger_store=ledger_store)
        rss_before = resident_mib()
        result = {"scenario": scenario, "store": store, "n": n}
        if scenario == "askuser":
            result.update(time_askuser(runtime, n))
        else:
            result.update(time_chain(runtime, n, with_effect=(scenario == "effchain")))
        result["disk_bytes"] = bytes_under(directory)
        result["rss_before_mb"] = round(rss_before, 1)
        result["peak_rss_mb"] = round(peak_resident_mib(), 1)
        return result
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- every combination, each in a child process -------------------------


def measure_in_child(scenario: str, store: str, n: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--one", scenario, store, str(n)]
    done = subprocess.run(command, capture_output=True, text=True)
    objects = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not objects:
        tail = (done.stderr or done.stdout)[-2000:]
        raise BenchFailure(f"exit status {done.returncode}\n{tail}")
    return json.loads(objects[-1])


def run_matrix(scenarios, stores, sizes) -> int:
    from importlib.metadata import version

    print(
        f"# abstractruntime {version('abstractruntime')}, "
        f"Python {platform.python_version()}, {platform.machine()}",
        flush=True,
    )
    failures = 0
    for scenario in scenarios:
        for store in stores:
            for n in sizes[scenario]:
                try:
                    result = measure_in_child(scenario, store, n)
                except BenchFailure as problem:
                    failures += 1
                    print(f"{scenario}/{store}/{n} failed: {problem}", file=sys.stderr, flush=True)
                    continue
                print(json.dumps(result), flush=True)
    return 1 if failures else 0


# --- command line -------------------------------------------------------


def size_list(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size or list of sizes: {text}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be at least 1: {text}")
    return sizes


def name_list(known):
    def parse(text: str) -> list[str]:
        names = [part for part in text.split(",") if part]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown or missing names in {text!r} (known: {','.join(known)})"
            )
        return names

    return parse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure AbstractRuntime on Waymark's peer workloads "
        "(one JSON object per line).",
    )
    parser.add_argument("--chain-n", type=size_list, default=[DEFAULT_SIZES["chain"]],
                        metavar="N[,N..]", help=f"pure chain length (default {DEFAULT_SIZES['chain']})")
    parser.add_argument("--effchain-n", type=size_list, default=[DEFAULT_SIZES["effchain"]],
                        metavar="N[,N..]", help=f"effect chain length (default {DEFAULT_SIZES['effchain']})")
    parser.add_argument("--runs", type=size_list, default=[DEFAULT_SIZES["askuser"]],
                        metavar="R[,R..]", help=f"ask/answer runs (default {DEFAULT_SIZES['askuser']})")
    parser.add_argument("--stores", type=name_list(STORES), default=list(STORES),
                        metavar="memory,json,sqlite")
    parser.add_argument("--scenarios", type=name_list(SCENARIOS), default=list(SCENARIOS),
                        metavar="chain,effchain,askuser")
    parser.add_argument("--one", nargs=3, metavar=("SCENARIO", "STORE", "N"),
                        help="measure this one combination in this process and print it")
    args = parser.parse_args(argv)

    if args.one:
        scenario, store, n = args.one
        # Stopped by a time limit (`timeout` sends SIGTERM): leave through
        # the normal exit path so that the store directory is removed.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        try:
            result = measure_one(scenario, store, size_list(n)[0])
        except (ValueError, argparse.ArgumentTypeError) as problem:
            parser.error(str(problem))
        except BenchFailure as problem:
            print(f"{scenario}/{store}/{n} failed: {problem}", file=sys.stderr)
            return 1
        print(json.dumps(result), flush=True)
        return 0

    sizes = {"chain": args.chain_n, "effchain": args.effchain_n, "askuser": args.runs}
    return run_matrix(args.scenarios, args.stores, sizes)


if __name__ == "__main__":
    sys.exit(main())
