// The quickstart workflow in JavaScript: ask a person a question, then
// finish with the answer (the same graph as examples/quickstart/src/lib.rs).
//
// Build (from the repository root, with componentize-js 0.23.0):
//
//   npx componentize-js --wit wit --world-name workflow \
//       -d stdio random clocks http fetch-event \
//       -o quickstart-js.wasm examples/javascript/quickstart/app.js
//
// Resume the run with {"text": "yes"} (or just "yes"); the output is
// {"answer": "yes"}.

// Asks "Continue?"; the answer lands in the var `answer`.
function ask(_ctx, _vars) {
  return {
    writes: [],
    effect: {
      effect: {
        tag: "ask-user",
        val: { prompt: "Continue?", choices: ["yes", "no"], allowFreeText: true },
      },
      resultKey: "answer",
    },
    transition: { tag: "next-node", val: "done" },
  };
}

// Completes with the answer's `text`, or the answer itself when it is a
// plain string.
function done(_ctx, vars) {
  let answer = vars.answer === undefined ? null : vars.answer;
  if (answer !== null && typeof answer === "object" && !Array.isArray(answer)) {
    answer = answer.text === undefined ? null : answer.text;
  }
  return {
    writes: [],
    effect: undefined,
    transition: { tag: "complete-output", val: JSON.stringify({ answer }) },
  };
}

const NODES = { ask, done };

export const node = {
  describe() {
    return {
      workflowId: "quickstart",
      entryNode: "ask",
      nodes: Object.keys(NODES),
      version: "0.1.0",
    };
  },

  // A thrown value becomes the `err` case of the result (jco convention:
  // throw the error payload itself, or a ComponentError with a payload).
  step(ctx) {
    const run = NODES[ctx.nodeId];
    if (!run) {
      throw { code: "unknown-node", message: `no node ${ctx.nodeId}`, retryable: false };
    }
    let vars;
    try {
      vars = JSON.parse(ctx.vars);
    } catch (e) {
      throw { code: "invalid-vars", message: String(e), retryable: false };
    }
    return run(ctx, vars);
  },
};
