"""A Python guest that misbehaves on purpose, one way per node, for the
sandbox tests (tests/all/lang.rs). Every node but `print` must end in a
typed failure, and the next step must run normally."""

import waymark
from waymark import Context, Plan


def raise_(ctx: Context) -> Plan:
    """An uncaught exception: a node error, not a trap."""
    return Plan.complete({"ratio": 1 // ctx.var_or("zero", 0)})


def print_(ctx: Context) -> Plan:
    """print() under --stub-wasi: a log line, not a trap."""
    print("hello from print")
    return Plan.complete({"printed": True})


def spin(ctx: Context) -> Plan:
    """An endless loop: out of fuel (or time)."""
    n = 0
    while True:
        n += 1


def bomb(ctx: Context) -> Plan:
    """Memory far beyond the step's cap, in one allocation."""
    return Plan.complete({"size": len(bytearray(256 << 20))})


def huge(ctx: Context) -> Plan:
    """An output beyond the plan size limit (64 KiB in the tests)."""
    return Plan.complete({"blob": "x" * (80 << 10)})


Node = waymark.workflow(
    id="hostile",
    version="0.1.0",
    entry="print",
    nodes={"print": print_, "raise": raise_, "spin": spin, "bomb": bomb, "huge": huge},
)
