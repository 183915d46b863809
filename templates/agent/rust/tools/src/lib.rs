//! The tools of the {{name}} agent, as a sandboxed tool component: the host
//! runs each call in a fresh instance under fuel, memory and time limits,
//! with no network or files, so a tool is a pure function of its arguments
//! (the shop's orders are a small table compiled in).

use serde::Deserialize;
use serde_json::json;
use waymark_guest::prelude::*;

waymark_guest::tools! {
    "lookup_order" => {
        description: "Look an order up by id: its status, items and total.",
        parameters: json!({
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        }),
        read_only: true,
        handler: lookup_order,
    },
    "refund_order" => {
        description: "Refund an amount on an order, up to its total.",
        parameters: json!({
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "amount": {"type": "integer"},
                "reason": {"type": "string"},
            },
            "required": ["order_id", "amount", "reason"],
        }),
        // A refund changes the world: the policy makes its calls wait for
        // a person's approval.
        read_only: false,
        handler: refund_order,
    },
}

/// (id, status, items, total)
const ORDERS: &[(&str, &str, &[&str], u64)] = &[
    ("A1", "delivered", &["kettle"], 20),
    ("A2", "shipped", &["mug", "mug"], 12),
    ("A3", "processing", &["teapot"], 35),
];

fn find(order_id: &str) -> Result<(&'static str, &'static [&'static str], u64), ToolError> {
    ORDERS
        .iter()
        .find(|(id, ..)| *id == order_id)
        .map(|(_, status, items, total)| (*status, *items, *total))
        .ok_or_else(|| ToolError::new("not_found", format!("no order '{order_id}'")))
}

#[derive(Deserialize)]
struct Lookup {
    order_id: String,
}

fn lookup_order(args: Lookup) -> ToolResult {
    let (status, items, total) = find(&args.order_id)?;
    Ok(json!({"order_id": args.order_id, "status": status, "items": items, "total": total}))
}

#[derive(Deserialize)]
struct Refund {
    order_id: String,
    amount: u64,
    reason: String,
}

fn refund_order(args: Refund) -> ToolResult {
    let (_, _, total) = find(&args.order_id)?;
    if !(1..=total).contains(&args.amount) {
        return Err(ToolError::new(
            "invalid_amount",
            format!("a refund on {} is 1 to {total}", args.order_id),
        ));
    }
    Ok(json!({"order_id": args.order_id, "refunded": args.amount, "reason": args.reason}))
}
