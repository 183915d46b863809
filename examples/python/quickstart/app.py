"""The quickstart workflow in Python: ask a person a question, then finish
with the answer. A port of examples/quickstart/src/lib.rs (same id, nodes,
plans and output).

Build (from the repository root, componentize-py 0.25.1):

    componentize-py -d wit -w workflow componentize app \\
        -p examples/python/quickstart -p guest-sdk/python \\
        --stub-wasi -o quickstart-py.wasm

Resume the run with `{"text": "yes"}` (or just `"yes"`); the output is
`{"answer": "yes"}`.
"""

import waymark
from waymark import Context, Effect, Plan


def ask(ctx: Context) -> Plan:
    """Asks "Continue?"; the answer lands in the var `answer`."""
    question = Effect.ask_user("Continue?", choices=["yes", "no"], allow_free_text=True)
    return Plan.next("done").effect(question, "answer")


def done(ctx: Context) -> Plan:
    """Completes with the answer's `text`, or the answer itself when it is
    a plain string."""
    answer = ctx.var_or("answer", None)
    if isinstance(answer, dict):
        answer = answer.get("text")
    return Plan.complete({"answer": answer})


Node = waymark.workflow(
    id="quickstart",
    version="0.1.0",
    entry="ask",
    nodes={"ask": ask, "done": done},
)
