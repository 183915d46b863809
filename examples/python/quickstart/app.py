"""The quickstart workflow in Python: ask a person a question, then finish
with the answer (the same graph as examples/quickstart/src/lib.rs).

Build (from the repository root, with componentize-py 0.25.1):

    componentize-py -d wit -w workflow componentize app \
        -p examples/python/quickstart --stub-wasi -o quickstart-py.wasm

Resume the run with `{"text": "yes"}` (or just `"yes"`); the output is
`{"answer": "yes"}`.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types as t


def _dumps(value) -> str:
    # Compact, like serde_json, so plans are byte-identical to the Rust guest's.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def ask(ctx: t.Context, vars: dict) -> t.StepPlan:
    """Asks "Continue?"; the answer lands in the var `answer`."""
    question = t.AskUser(prompt="Continue?", choices=["yes", "no"], allow_free_text=True)
    return t.StepPlan(
        writes=[],
        effect=t.EffectRequest(effect=t.Effect_AskUser(question), result_key="answer"),
        transition=t.Transition_NextNode("done"),
    )


def done(ctx: t.Context, vars: dict) -> t.StepPlan:
    """Completes with the answer's `text`, or the answer itself when it is a
    plain string."""
    answer = vars.get("answer")
    if isinstance(answer, dict):
        answer = answer.get("text")
    return t.StepPlan(
        writes=[],
        effect=None,
        transition=t.Transition_CompleteOutput(_dumps({"answer": answer})),
    )


NODES = {"ask": ask, "done": done}


class Node(exports.Node):
    def describe(self) -> t.WorkflowInfo:
        return t.WorkflowInfo(
            workflow_id="quickstart",
            entry_node="ask",
            nodes=list(NODES),
            version="0.1.0",
        )

    def step(self, ctx: t.Context) -> t.StepPlan:
        node = NODES.get(ctx.node_id)
        if node is None:
            raise Err(t.NodeError(code="unknown-node", message=f"no node {ctx.node_id!r}", retryable=False))
        try:
            vars = json.loads(ctx.vars)
        except ValueError as e:
            raise Err(t.NodeError(code="invalid-vars", message=str(e), retryable=False))
        return node(ctx, vars)
