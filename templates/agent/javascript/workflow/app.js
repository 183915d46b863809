// The {{name}} agent: ask the model, run the tools it calls, feed the
// results back, and repeat until it answers.
//
// Vars: {"question": "...", "max_turns"?: 6}. The model may call the two
// tools of this project's tool component: `lookup_order` (read-only, runs
// at once) and `refund_order` (changes the world, so the policy makes the
// run wait for a person's approval).
//
// Nodes: `think` asks the model (its answer lands in `_llm`); `act`
// finishes with the answer, or requests the tool calls the model made
// (results in `_tools`); `observe` feeds each result back as a `tool`
// message and goes back to `think`.

import { workflow, Plan, Effect, ToolCall } from "../waymark.js";

const MAX_TURNS = 6;

const SYSTEM =
  "You are a support agent for an online shop. Look orders up before " +
  "acting; refunds need a reason. Answer briefly.";

const fn = (name, description, parameters) => ({
  type: "function",
  function: { name, description, parameters },
});

// The tools offered to the model, as OpenAI-style function schemas.
const TOOLS = [
  fn("lookup_order", "Look an order up by id: its status, items and total.", {
    type: "object",
    properties: { order_id: { type: "string" } },
    required: ["order_id"],
  }),
  fn("refund_order", "Refund an amount on an order, up to its total.", {
    type: "object",
    properties: {
      order_id: { type: "string" },
      amount: { type: "integer" },
      reason: { type: "string" },
    },
    required: ["order_id", "amount", "reason"],
  }),
];

/** The conversation so far: `messages`, or the question as its first turn. */
function messages(ctx) {
  const existing = ctx.var("messages");
  if (existing !== null) return existing;
  return [{ role: "user", content: ctx.require("question", "string") }];
}

/** Asks the model, unless the run is out of turns. */
function think(ctx) {
  const turns = ctx.varOr("turns", 0, "u64");
  if (turns >= ctx.varOr("max_turns", MAX_TURNS, "u64")) {
    return Plan.complete({ status: "gave_up", turns });
  }
  const history = messages(ctx);
  const call = Effect.llmCall(history).system(SYSTEM).tools(TOOLS).params({ temperature: 0 });
  return Plan.next("act").set("messages", history).set("turns", turns + 1).effect(call, "_llm");
}

/** Finishes with the model's answer, or runs the tools it called. */
function act(ctx) {
  const content = ctx.var("_llm.content", "string");
  const calls = ctx.varOr("_llm.tool_calls", []);
  if (calls.length === 0) {
    return Plan.complete({ status: "answered", answer: content, turns: ctx.varOr("turns", 0, "u64") });
  }
  // The assistant's turn in OpenAI shape, so the next call shows the model
  // what it asked for (providers convert it as needed).
  const asked = calls.map((c) => ({
    id: c.call_id,
    type: "function",
    function: { name: c.name, arguments: JSON.stringify(c.arguments) },
  }));
  const history = messages(ctx);
  history.push({ role: "assistant", content, tool_calls: asked });
  const batch = calls.map((c) => new ToolCall(c.call_id ?? "", c.name ?? "", c.arguments));
  return Plan.next("observe").set("messages", history).effect(Effect.toolCalls(batch), "_tools");
}

/** Feeds each result (an output, a tool's error, a denied approval) back to
 * the model. */
function observe(ctx) {
  const history = messages(ctx);
  for (const r of ctx.require("_tools")) {
    const content = JSON.stringify(r.success === true ? r.output : { error: r.error });
    history.push({ role: "tool", tool_call_id: r.call_id, content });
  }
  return Plan.next("think").set("messages", history).remove("_tools");
}

export const node = workflow({
  id: "{{name}}",
  version: "0.1.0",
  entry: "think",
  nodes: { think, act, observe },
});
