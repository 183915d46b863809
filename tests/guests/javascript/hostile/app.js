// A JavaScript guest that misbehaves on purpose, one way per node, for the
// sandbox tests (tests/all/lang.rs). Every node but `print` must end in a
// typed failure, and the next step must run normally.

import { workflow, Plan } from "../../../../guest-sdk/javascript/waymark.js";

export const node = workflow({
  id: "hostile",
  version: "0.1.0",
  entry: "print",
  nodes: {
    // console.log with stdio disabled: a log line, not a trap.
    print() {
      console.log("hello from print");
      return Plan.complete({ printed: true });
    },
    // An uncaught exception: a node error, not a trap.
    raise(ctx) {
      return Plan.complete({ length: ctx.varOr("missing", null).length });
    },
    // An endless loop: out of fuel (or time).
    spin() {
      for (;;) {}
    },
    // Memory far beyond the step's cap, in one allocation.
    bomb() {
      return Plan.complete({ size: new Uint8Array(256 << 20).length });
    },
    // An output beyond the plan size limit (64 KiB in the tests).
    huge(ctx) {
      return Plan.complete({ blob: "x".repeat(ctx.varOr("bytes", 80 << 10, "u32")) });
    },
  },
});
