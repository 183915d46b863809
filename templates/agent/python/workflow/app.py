"""The {{name}} agent: ask the model, run the tools it calls, feed the
results back, and repeat until it answers.

Vars: `{"question": "...", "max_turns"?: 6}`. The model may call the two
tools of this project's tool component: `lookup_order` (read-only, runs at
once) and `refund_order` (changes the world, so the policy makes the run
wait for a person's approval).

Nodes: `think` asks the model (its answer lands in `_llm`); `act` finishes
with the answer, or requests the tool calls the model made (results in
`_tools`); `observe` feeds each result back as a `tool` message and goes
back to `think`.
"""

import waymark
from waymark import Context, Effect, Plan, ToolCall, u64

MAX_TURNS = 6

SYSTEM = ("You are a support agent for an online shop. Look orders up before "
          "acting; refunds need a reason. Answer briefly.")


def _function(name: str, description: str, parameters: dict) -> dict:
    return {"type": "function",
            "function": {"name": name, "description": description, "parameters": parameters}}


# The tools offered to the model, as OpenAI-style function schemas.
TOOLS = [
    _function("lookup_order", "Look an order up by id: its status, items and total.",
              {"type": "object", "properties": {"order_id": {"type": "string"}},
               "required": ["order_id"]}),
    _function("refund_order", "Refund an amount on an order, up to its total.",
              {"type": "object",
               "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer"},
                              "reason": {"type": "string"}},
               "required": ["order_id", "amount", "reason"]}),
]


def messages(ctx: Context) -> list:
    """The conversation so far: `messages`, or the question as its first turn."""
    existing = ctx.var("messages", list)
    if existing is not None:
        return existing
    return [{"role": "user", "content": ctx.require("question", str)}]


def think(ctx: Context) -> Plan:
    """Asks the model, unless the run is out of turns."""
    turns = ctx.var_or("turns", 0, u64)
    if turns >= ctx.var_or("max_turns", MAX_TURNS, u64):
        return Plan.complete({"status": "gave_up", "turns": turns})
    history = messages(ctx)
    call = Effect.llm_call(history, system=SYSTEM, tools=TOOLS, params={"temperature": 0})
    return Plan.next("act").set("messages", history).set("turns", turns + 1).effect(call, "_llm")


def act(ctx: Context) -> Plan:
    """Finishes with the model's answer, or runs the tools it called."""
    content = ctx.var("_llm.content", str)
    calls = ctx.var_or("_llm.tool_calls", [], list)
    if not calls:
        return Plan.complete({"status": "answered", "answer": content,
                              "turns": ctx.var_or("turns", 0, u64)})
    # The assistant's turn in OpenAI shape, so the next call shows the
    # model what it asked for (providers convert it as needed).
    asked = [{"id": c.get("call_id"), "type": "function",
              "function": {"name": c.get("name"), "arguments": waymark.dumps(c.get("arguments"))}}
             for c in calls]
    history = messages(ctx)
    history.append({"role": "assistant", "content": content, "tool_calls": asked})
    batch = [ToolCall(c.get("call_id") or "", c.get("name") or "", c.get("arguments"))
             for c in calls]
    return Plan.next("observe").set("messages", history).effect(Effect.tool_calls(batch), "_tools")


def observe(ctx: Context) -> Plan:
    """Feeds each result (an output, a tool's error, a denied approval)
    back to the model."""
    history = messages(ctx)
    for r in ctx.require("_tools", list):
        if r.get("success") is True:
            content = waymark.dumps(r.get("output"))
        else:
            content = waymark.dumps({"error": r.get("error")})
        history.append({"role": "tool", "tool_call_id": r.get("call_id"), "content": content})
    return Plan.next("think").set("messages", history).remove("_tools")


Node = waymark.workflow(
    id="{{name}}",
    version="0.1.0",
    entry="think",
    nodes={"think": think, "act": act, "observe": observe},
)
