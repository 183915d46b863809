//! The tools of {{name}}, as a sandboxed tool component: the host runs each
//! call in a fresh instance under fuel, memory and time limits, with no
//! network or files, so a tool is a pure function of its arguments.

use serde::Deserialize;
use serde_json::json;
use waymark_guest::prelude::*;

waymark_guest::tools! {
    "issue_refund" => {
        description: "Refund an amount (1 to 1000) on an order; returns the receipt.",
        parameters: json!({
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "amount": {"type": "integer"},
            },
            "required": ["order_id", "amount"],
        }),
        // A refund changes the world: the policy makes its calls wait for
        // a person's approval.
        read_only: false,
        handler: issue_refund,
    },
}

#[derive(Deserialize)]
struct Refund {
    order_id: String,
    amount: u64,
}

fn issue_refund(args: Refund) -> ToolResult {
    if !(1..=1000).contains(&args.amount) {
        return Err(ToolError::new(
            "invalid_amount",
            format!("a refund is 1 to 1000, not {}", args.amount),
        ));
    }
    Ok(json!({
        "receipt": format!("R-{}", args.order_id),
        "order_id": args.order_id,
        "refunded": args.amount,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refunds_are_bounded() {
        let refund = |amount| {
            issue_refund(Refund {
                order_id: "A-17".into(),
                amount,
            })
        };
        assert_eq!(refund(25).unwrap()["receipt"], "R-A-17");
        assert!(refund(0).is_err());
        assert!(refund(1001).is_err());
    }
}
