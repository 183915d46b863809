// The quickstart workflow in JavaScript: ask a person a question, then
// finish with the answer (a port of examples/quickstart/src/lib.rs).
//
// Build from the repository root (componentize-js 0.23.0; it resolves the
// relative import of guest-sdk/javascript/waymark.js only inside the
// current directory):
//
//   componentize-js --wit wit --world-name workflow \
//       -d stdio random clocks http fetch-event \
//       -o quickstart-js.wasm examples/javascript/quickstart/app.js
//
// Resume the run with {"text": "yes"} (or just "yes"); the output is
// {"answer": "yes"}.

import { workflow, Plan, Effect, jsonType } from "../../../guest-sdk/javascript/waymark.js";

// Asks "Continue?"; the answer lands in the var `answer`.
function ask(_ctx) {
  const question = Effect.askUser("Continue?").choices(["yes", "no"]).allowFreeText(true);
  return Plan.next("done").effect(question, "answer");
}

// Completes with the answer's `text`, or the answer itself when it is a
// plain string.
function done(ctx) {
  let answer = ctx.varOr("answer", null);
  if (jsonType(answer) === "object") answer = answer.text ?? null;
  return Plan.complete({ answer });
}

export const node = workflow({
  id: "quickstart",
  version: "0.1.0",
  entry: "ask",
  nodes: { ask, done },
});
