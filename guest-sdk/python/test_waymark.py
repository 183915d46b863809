"""Native tests of waymark.py (CPython 3.11+, no wasm needed).

From the repository root:

    componentize-py -d wit -w workflow bindings target/py-bindings
    PYTHONPATH=target/py-bindings:guest-sdk/python python3 -m unittest test_waymark

They mirror the Rust SDK's unit tests; the JSON and error texts expected
here were produced by serde_json 1.0.154 (the version the Rust guests use).
"""

import dataclasses
import unittest
from typing import Optional

import waymark as w
from waymark import Context, Effect, NodeError, Plan, Scope, ToolCall, log
from wit_world.imports import types as t


def wit_ctx(node, vars_json, now_ms=42):
    return t.Context(run_id="r1", workflow_id="wf", node_id=node, attempt=2, vars=vars_json,
                     now_ms=now_ms)


@dataclasses.dataclass
class Item:
    sku: str
    qty: w.u64


@dataclasses.dataclass
class Opt:
    a: Optional[w.u32]
    b: str


class JsonTest(unittest.TestCase):
    def test_matches_serde_json(self):
        cases = {
            '{"b":1,"a":2,"é":3,"Z":4}': '{"Z":4,"a":2,"b":1,"é":3}',
            '"\\u0001\\u007f\\u2028</"': '"\\u0001\x7f\u2028</"',
            "1e16": "1e+16", "1e15": "1000000000000000.0", "1.5e-5": "0.000015",
            "1e-6": "1e-6", "1.5e-7": "1.5e-7", "0.1": "0.1", "-0.0": "-0.0", "1E2": "100.0",
            "18446744073709551615": "18446744073709551615",
            "-9223372036854775808": "-9223372036854775808",
            "5e-324": "5e-324", "1.7976931348623157e308": "1.7976931348623157e+308",
            # Correctly rounded, as serde_json with `float_roundtrip` reads them.
            "-1.5432835417340557e+88": "-1.5432835417340557e+88",
            "7.370437700706684e+208": "7.370437700706684e+208",
        }
        for text, expected in cases.items():
            self.assertEqual(w.dumps(w.loads(text)), expected, text)
        strict = {"-0": "-0.0", "18446744073709551616": "1.8446744073709552e+19",
                  "123456789012345678901234567890": "1.2345678901234568e+29"}
        for text, expected in strict.items():
            self.assertEqual(w.dumps(w.loads(text, strict_numbers=True)), expected, text)

    def test_python_values(self):
        self.assertEqual(w.dumps({"b": (1, 2.5), "a": None, "10": 1, "2": 2}),
                         '{"10":1,"2":2,"a":null,"b":[1,2.5]}')
        self.assertEqual(w.dumps({10: "a", 2: "b"}), '{"2":"b","10":"a"}')
        self.assertEqual(w.dumps([float("nan"), float("inf"), 2 ** 70]),
                         "[null,null,1180591620717411303424]")
        self.assertEqual(w.dumps(Item("A", 3)), '{"sku":"A","qty":3}')
        with self.assertRaises(NodeError) as e:
            w.dumps({"a": object()})
        self.assertEqual(e.exception.code, "json")

    def test_display(self):
        for value, text in [(1e16, "10000000000000000"), (1e-7, "0.0000001"), (0.1, "0.1"),
                            (100.0, "100"), (-0.0, "-0"), (1059438285926254.2, "1059438285926254.3"),
                            (True, "true"), (7, "7"), ("x", "x"), ([1, {"b": 1, "a": 2}], '[1,{"a":2,"b":1}]')]:
            self.assertEqual(w._display(value), text)


class ContextTest(unittest.TestCase):
    def test_accessors(self):
        ctx = Context.from_wit(wit_ctx("n", '{"a": 1}'))
        self.assertEqual((ctx.run_id, ctx.workflow_id, ctx.node, ctx.attempt, ctx.now_ms),
                         ("r1", "wf", "n", 2, 42))
        self.assertEqual(ctx.vars_json, '{"a": 1}')
        self.assertEqual(ctx.vars, {"a": 1})

    def test_typed_vars(self):
        ctx = Context.from_wit(wit_ctx(
            "n", '{"items": [{"sku": "A", "qty": 3}], "n": null, "s": "x", "m": {"1": "one"}}'))
        self.assertEqual(ctx.var("items.0", Item), Item("A", 3))
        self.assertEqual(ctx.var("items.0.qty", w.u32), 3)
        self.assertIsNone(ctx.var("items.1.qty", w.u32))
        self.assertIsNone(ctx.var("n", w.u32))
        self.assertEqual(ctx.var_or("n", 7), 7)
        self.assertEqual(ctx.var_or("missing", 7), 7)
        self.assertEqual(ctx.var_or("items.0.qty", 7), 3)
        self.assertTrue(ctx.has("n"))
        self.assertFalse(ctx.has("nope"))
        self.assertIsNone(ctx.get("n", "absent"))
        self.assertEqual(ctx.get("nope", "absent"), "absent")
        self.assertEqual(ctx.get("m.1"), "one")
        err = self.assertRaisesCode("invalid-var", ctx.var, "s", w.u32)
        self.assertEqual(err.message, 'var `s`: invalid type: string "x", expected u32')
        err = self.assertRaisesCode("missing-var", ctx.require, "missing.deep", w.u32)
        self.assertEqual(err.message, "var `missing.deep` is required but missing")
        self.assertEqual(ctx.require("s", str), "x")
        for bad in ["", ".", "a.", ".a", "a..b"]:
            self.assertRaisesCode("invalid-path", ctx.var, bad)

    def test_serde_messages(self):
        ctx = Context.for_node("n", {
            "neg": -1, "f": 3.0, "b": True, "l": [1], "d": {"a": 1}, "big": 4294967296,
            "item_seq": ["A", 3], "short": ["A"], "long": ["A", 3, 4], "noqty": {"sku": "A"},
            "both_bad": {"sku": 5, "qty": "x"}, "opt": {"b": "x"}, "esc": "a\"b\\c\n\t\u0001\u00a0\u0301",
        })
        expect = [
            ("neg", w.u64, "invalid value: integer `-1`, expected u64"),
            ("f", w.u64, "invalid type: floating point `3.0`, expected u64"),
            ("b", w.u64, "invalid type: boolean `true`, expected u64"),
            ("l", w.u64, "invalid type: sequence, expected u64"),
            ("d", w.u64, "invalid type: map, expected u64"),
            ("big", w.usize, "invalid value: integer `4294967296`, expected usize"),
            ("neg", bool, "invalid type: integer `-1`, expected a boolean"),
            ("neg", str, "invalid type: integer `-1`, expected a string"),
            ("short", Item, "invalid length 1, expected struct Item with 2 elements"),
            ("long", Item, "invalid length 3, expected fewer elements in array"),
            ("noqty", Item, "missing field `qty`"),
            ("both_bad", Item, 'invalid type: string "x", expected u64'),
            ("neg", Item, "invalid type: integer `-1`, expected struct Item"),
            ("d", list[w.u64], "invalid type: map, expected a sequence"),
            ("l", dict, "invalid type: sequence, expected a map"),
            ("esc", w.u64, 'invalid type: string "a\\"b\\\\c\\n\\t\\u{1}\\u{a0}\\u{301}", expected u64'),
        ]
        for path, ty, message in expect:
            err = self.assertRaisesCode("invalid-var", ctx.var, path, ty)
            self.assertEqual(err.message, f"var `{path}`: {message}")
        self.assertEqual(ctx.var("item_seq", Item), Item("A", 3))
        self.assertEqual(ctx.var("opt", Opt), Opt(None, "x"))
        self.assertEqual(ctx.var("f", float), 3.0)
        self.assertEqual(ctx.var("l", list[int]), [1])

    def test_invalid_vars_json(self):
        ctx = Context.from_wit(wit_ctx("n", "{not json"))
        self.assertIsNone(ctx.vars)
        self.assertRaisesCode("invalid-vars", ctx.var, "a", w.u32)
        self.assertRaisesCode("invalid-vars", ctx.var_or, "a", 1)

    def test_for_node(self):
        ctx = Context.for_node("pack", {"x": [1, 2]}, now_ms=5, attempt=3, run_id="r",
                               workflow_id="w")
        self.assertEqual((ctx.node, ctx.now_ms, ctx.attempt, ctx.run_id, ctx.workflow_id),
                         ("pack", 5, 3, "r", "w"))
        self.assertEqual(ctx.var("x.1", w.u8), 2)
        self.assertEqual(ctx.vars_json, '{"x":[1,2]}')

    def assertRaisesCode(self, code, fn, *args):
        with self.assertRaises(NodeError) as e:
            fn(*args)
        self.assertEqual(e.exception.code, code)
        return e.exception


class PlanTest(unittest.TestCase):
    def test_next_with_writes_and_effect(self):
        plan = (Plan.next("done").set("a.b", {"x": 1}).set("n", 3).set("s", "text")
                .remove("_temp").effect(Effect.ask_user("Continue?"), "answer").into_wit())
        self.assertEqual(plan, t.StepPlan(
            writes=[t.VarWrite_Set(t.VarSet("a.b", '{"x":1}')), t.VarWrite_Set(t.VarSet("n", "3")),
                    t.VarWrite_Set(t.VarSet("s", '"text"')), t.VarWrite_Remove("_temp")],
            effect=t.EffectRequest(t.Effect_AskUser(t.AskUser("Continue?", [], True)), "answer"),
            transition=t.Transition_NextNode("done")))

    def test_complete_variants(self):
        self.assertEqual(Plan.complete({"ok": True}).into_wit().transition,
                         t.Transition_CompleteOutput('{"ok":true}'))
        self.assertEqual(Plan.complete().into_wit().transition, t.Transition_CompleteOutput("{}"))
        self.assertEqual(Plan.complete(None).into_wit().transition,
                         t.Transition_CompleteOutput("null"))
        self.assertEqual(Plan.complete("str").into_wit().transition,
                         t.Transition_CompleteOutput('"str"'))
        self.assertIsNone(Plan.next("x").effect_discard(Effect.wait_until(5)).into_wit()
                          .effect.result_key)

    def test_errors_surface_on_conversion(self):
        bad = {"k": object()}
        for plan in [Plan.complete(bad), Plan.next("x").set("a", bad),
                     Plan.next("x").effect(Effect.custom("c", bad), "k")]:
            with self.assertRaises(NodeError) as e:
                plan.into_wit()
            self.assertEqual(e.exception.code, "json")
        twice = Plan.next("x").effect_discard(Effect.wait_until(1)).effect_discard(Effect.wait_until(2))
        with self.assertRaises(NodeError) as e:
            twice.into_wit()
        self.assertEqual(e.exception.code, "invalid-plan")
        first = (Plan.next("x").set("a", bad).effect_discard(Effect.wait_until(1))
                 .effect_discard(Effect.wait_until(2)))
        with self.assertRaises(NodeError) as e:
            first.into_wit()
        self.assertEqual(e.exception.code, "json")


class EffectTest(unittest.TestCase):
    def test_defaults_and_options(self):
        wit = lambda e: e.into_wit()  # noqa: E731
        self.assertEqual(wit(Effect.ask_user("Name?")), t.Effect_AskUser(t.AskUser("Name?", [], True)))
        self.assertEqual(wit(Effect.ask_user("Go?").choices(["yes", "no"])),
                         t.Effect_AskUser(t.AskUser("Go?", ["yes", "no"], False)))
        self.assertEqual(wit(Effect.ask_user("Go?", choices=["y"], allow_free_text=True)),
                         t.Effect_AskUser(t.AskUser("Go?", ["y"], True)))
        self.assertEqual(wit(Effect.answer_user("hi")), t.Effect_AnswerUser(t.AnswerUser("hi", "info")))
        self.assertEqual(wit(Effect.answer_user("hi").level("warning")),
                         t.Effect_AnswerUser(t.AnswerUser("hi", "warning")))
        ctx = Context.for_node("n", now_ms=1_000)
        self.assertEqual(wit(Effect.wait_for_ms(ctx, 50)), t.Effect_WaitUntil(t.WaitUntil(1_050)))
        ctx = Context.for_node("n", now_ms=w.U64_MAX - 1)
        self.assertEqual(wit(Effect.wait_for_ms(ctx, 50)), t.Effect_WaitUntil(t.WaitUntil(w.U64_MAX)))
        self.assertEqual(wit(Effect.wait_event("paid")),
                         t.Effect_WaitEvent(t.WaitEvent("paid", t.EventScope_Session(), None)))
        self.assertEqual(wit(Effect.wait_event("paid").scope(Scope.run("r9")).deadline(99)),
                         t.Effect_WaitEvent(t.WaitEvent("paid", t.EventScope_Run("r9"), 99)))
        self.assertEqual(wit(Effect.emit_event("e", {"a": 1}).scope(Scope.GLOBAL)),
                         t.Effect_EmitEvent(t.EmitEvent("e", t.EventScope_Global(), '{"a":1}')))
        self.assertEqual(wit(Effect.emit_event("e", 1, scope="workflow")).value.scope,
                         t.EventScope_Workflow())
        self.assertEqual(wit(Effect.start_child("packing", {"items": []})),
                         t.Effect_StartSubworkflow(t.StartSubworkflow("packing", '{"items":[]}',
                                                                      t.ChildMode.SYNC)))
        self.assertEqual(wit(Effect.start_child("p", {}).detached()).value.mode, t.ChildMode.ASYNC)
        self.assertEqual(wit(Effect.start_child("p", {}).detached().sync()).value.mode, t.ChildMode.SYNC)
        self.assertEqual(wit(Effect.vars_query(["a.b", "c"]).of_run("r2")),
                         t.Effect_VarsQuery(t.VarsQuery("r2", ["a.b", "c"])))
        msgs = [{"role": "user", "content": "hi"}]
        self.assertEqual(wit(Effect.llm_call(msgs)), t.Effect_LlmCall(t.LlmCall(
            None, None, None, '[{"content":"hi","role":"user"}]', None, None)))
        self.assertEqual(wit(Effect.llm_call(msgs).system("be brief").model("m").provider("p")
                             .tools([]).params({"temperature": 0})),
                         t.Effect_LlmCall(t.LlmCall("p", "m", "be brief",
                                                    '[{"content":"hi","role":"user"}]', "[]",
                                                    '{"temperature":0}')))
        self.assertEqual(wit(Effect.tool_calls([ToolCall("c1", "add", {"a": 1})])),
                         t.Effect_ToolCalls(t.ToolCalls([t.ToolCall("c1", "add", '{"a":1}')])))
        self.assertEqual(wit(Effect.custom("inventory.reserve", {"units": 3})),
                         t.Effect_Custom(t.CustomEffect("inventory.reserve", '{"units":3}')))

    def test_serialization_errors_are_kept(self):
        bad = {"k": object()}
        for effect in [Effect.custom("x", bad), Effect.emit_event("x", bad),
                       Effect.start_child("x", bad), Effect.llm_call(bad),
                       Effect.llm_call([]).tools(bad), Effect.llm_call([]).params(bad),
                       Effect.tool_calls([ToolCall("1", "t", {}), ToolCall("2", "t", bad)])]:
            with self.assertRaises(NodeError) as e:
                effect.into_wit()
            self.assertEqual(e.exception.code, "json")


class LogTest(unittest.TestCase):
    def test_captures_lines_natively(self):
        log.take_captured()
        log.info("hello")
        log.with_fields(log.WARN, "low", [("sku", "A"), ("left", 2)])
        log.with_fields("error", "dict", {"f": 1.5, "b": False})
        lines = log.take_captured()
        self.assertEqual(lines, [(log.INFO, "hello", []), (log.WARN, "low", [("sku", "A"), ("left", "2")]),
                                 (log.ERROR, "dict", [("f", "1.5"), ("b", "false")])])
        self.assertEqual(log.take_captured(), [])


class WorkflowTest(unittest.TestCase):
    def setUp(self):
        def a(ctx):
            return Plan.complete(ctx.require("n", w.u32))

        def b(ctx):
            raise NodeError("nope", "b fails", retryable=True)

        self.Node = w.workflow(id="t", version="1.2.3", entry="b", nodes={
            "a": a, "b": b, "c": lambda ctx: Plan.next("a"), "d": lambda ctx: 1 / 0,
            "e": lambda ctx: "not a plan"})

    def step(self, node, vars_json="{}"):
        try:
            return self.Node().step(wit_ctx(node, vars_json))
        except w.Err as e:
            return e.value

    def test_describe_lists_nodes_in_order(self):
        self.assertEqual(self.Node().describe(), t.WorkflowInfo("t", "b", ["a", "b", "c", "d", "e"], "1.2.3"))
        with self.assertRaises(ValueError):
            w.workflow(id="t", version="0", entry="x", nodes={"a": lambda ctx: None})

    def test_step_dispatches_and_converts(self):
        self.assertEqual(self.step("a", '{"n": 4}').transition, t.Transition_CompleteOutput("4"))
        self.assertEqual(self.step("c").transition, t.Transition_NextNode("a"))
        self.assertEqual(self.step("b"), t.NodeError("nope", "b fails", True))
        self.assertEqual(self.step("a").code, "missing-var")
        self.assertEqual(self.step("zzz"),
                         t.NodeError("unknown-node", "this workflow has no node named `zzz`", False))
        log.take_captured()
        self.assertEqual(self.step("d"),
                         t.NodeError("exception", "ZeroDivisionError: division by zero", False))
        [(level, message, fields)] = log.take_captured()
        self.assertEqual((level, message, fields[0][0]),
                         (log.ERROR, "uncaught ZeroDivisionError in node `d`", "traceback"))
        self.assertEqual(self.step("e").code, "invalid-plan")


if __name__ == "__main__":
    unittest.main()
