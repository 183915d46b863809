//! The tools of the agent example, as a sandboxed tool component: a model
//! (through the `agent` workflow) may call them by name.
//!
//! - `lookup_order` only reads: the host's default policy runs it at once.
//! - `refund_order` stands for a change in the world: the default policy
//!   makes the run wait for a person's approval before it runs.
//!
//! Like every tool component, these are pure functions of their arguments
//! (the shop's data is a small table compiled in); the host runs each call
//! in a fresh instance under fuel, memory and time limits.

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
                "amount": {"type": "number"},
                "reason": {"type": "string"},
            },
            "required": ["order_id", "amount"],
        }),
        read_only: false,
        handler: refund_order,
    },
}

/// (id, status, items, total)
const ORDERS: &[(&str, &str, &[&str], f64)] = &[
    ("A1", "delivered", &["kettle"], 20.0),
    ("A2", "shipped", &["mug", "mug"], 12.5),
    ("A3", "processing", &["teapot"], 35.0),
];

fn find(order_id: &str) -> Result<(&'static str, &'static [&'static str], f64), ToolError> {
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
    amount: f64,
    #[serde(default)]
    reason: Option<String>,
}

fn refund_order(args: Refund) -> ToolResult {
    let (_, _, total) = find(&args.order_id)?;
    if !(args.amount > 0.0 && args.amount <= total) {
        return Err(ToolError::new(
            "invalid_amount",
            format!(
                "a refund on {} must be more than 0 and at most {total}",
                args.order_id
            ),
        ));
    }
    Ok(json!({
        "order_id": args.order_id,
        "refunded": args.amount,
        "reason": args.reason,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refunds_are_bounded_by_the_total() {
        let ok = refund_order(Refund {
            order_id: "A1".into(),
            amount: 20.0,
            reason: None,
        });
        assert_eq!(ok.unwrap()["refunded"], 20.0);
        let too_much = refund_order(Refund {
            order_id: "A1".into(),
            amount: 21.0,
            reason: None,
        });
        assert!(too_much.is_err());
        assert!(
            lookup_order(Lookup {
                order_id: "Z9".into()
            })
            .is_err()
        );
    }
}
