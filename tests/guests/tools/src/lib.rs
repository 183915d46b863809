//! A tool component for the host's tests: two well-behaved tools of an
//! order desk and hostile ones that each break one limit.
//!
//! * `lookup_order` (read-only): `{"order_id"}` → `{"order_id", "status":
//!   "shipped", "items": [...]}`, items derived from the id; the id
//!   `"missing"` is the tool's own `not_found` error.
//! * `refund_order`: `{"order_id", "amount"}` → `{"order_id", "refunded":
//!   amount}`; a non-positive amount is `invalid_amount`.
//! * `spin`: loops forever (fuel or the deadline stops it).
//! * `grow`: allocates until the memory limit refuses.
//! * `huge`: returns a string of `bytes` (default 8 MiB) bytes.
//! * `garbage`: returns text that is not JSON, through a raw handler (a
//!   typed handler cannot).
//! * `panic`: panics (the instance traps).

use serde::Deserialize;
use serde_json::{Value, json};
use waymark_guest::prelude::*;

waymark_guest::tools! {
    "lookup_order" => {
        description: "Look up an order by its id: its status and items.",
        parameters: json!({
            "type": "object",
            "properties": { "order_id": { "type": "string" } },
            "required": ["order_id"],
        }),
        read_only: true,
        handler: lookup_order,
    },
    "refund_order" => {
        description: "Refund an amount of an order; returns the receipt.",
        parameters: json!({
            "type": "object",
            "properties": {
                "order_id": { "type": "string" },
                "amount": { "type": "number", "exclusiveMinimum": 0 },
            },
            "required": ["order_id", "amount"],
        }),
        read_only: false,
        handler: refund_order,
    },
    "spin" => {
        description: "Never returns.",
        parameters: json!({ "type": "object" }),
        read_only: true,
        handler: spin,
    },
    "grow" => {
        description: "Allocates memory until none is left.",
        parameters: json!({ "type": "object" }),
        read_only: true,
        handler: grow,
    },
    "huge" => {
        description: "Returns a string of `bytes` bytes.",
        parameters: json!({
            "type": "object",
            "properties": { "bytes": { "type": "integer", "minimum": 0 } },
        }),
        read_only: true,
        handler: huge,
    },
    "garbage" => {
        description: "Returns text that is not JSON.",
        parameters: r#"{"type": "object"}"#,
        read_only: true,
        raw_handler: |_arguments: &str| Ok("this is {not JSON".to_owned()),
    },
    "panic" => {
        description: "Panics.",
        parameters: json!({ "type": "object" }),
        read_only: true,
        handler: |_: Value| -> ToolResult { panic!("the panic tool panicked") },
    },
}

#[derive(Deserialize)]
struct Lookup {
    order_id: String,
}

fn lookup_order(args: Lookup) -> ToolResult {
    if args.order_id == "missing" {
        return Err(ToolError::new(
            "not_found",
            format!("no order has the id `{}`", args.order_id),
        ));
    }
    log::with_fields(
        log::Level::Info,
        "order looked up",
        &[("order_id", &args.order_id)],
    );
    let items: Vec<Value> = (1..=args.order_id.len().min(3))
        .map(|n| json!({ "sku": format!("{}-{n}", args.order_id), "quantity": n }))
        .collect();
    Ok(json!({ "order_id": args.order_id, "status": "shipped", "items": items }))
}

#[derive(Deserialize)]
struct Refund {
    order_id: String,
    amount: f64,
}

fn refund_order(args: Refund) -> ToolResult {
    if args.amount.is_nan() || args.amount <= 0.0 {
        return Err(ToolError::new(
            "invalid_amount",
            format!("cannot refund {}", args.amount),
        ));
    }
    Ok(json!({ "order_id": args.order_id, "refunded": args.amount }))
}

fn spin(_: Value) -> ToolResult {
    let mut n = 0u64;
    loop {
        // Opaque to the optimizer, so the loop stays a loop.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn grow(_: Value) -> ToolResult {
    let mut chunks = Vec::new();
    loop {
        // Reserved, not written: the memory grows without costing fuel.
        chunks.push(std::hint::black_box(Vec::<u8>::with_capacity(1 << 20)));
    }
}

#[derive(Deserialize)]
struct Huge {
    #[serde(default = "eight_mib")]
    bytes: usize,
}

fn eight_mib() -> usize {
    8 << 20
}

fn huge(args: Huge) -> ToolResult<String> {
    Ok("x".repeat(args.bytes))
}
