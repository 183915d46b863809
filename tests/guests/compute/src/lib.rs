//! A CPU-bound node for measuring the sandbox's own costs (fuel metering,
//! epoch checks): `work` runs `vars.iterations` rounds (default 1 000 000)
//! of a xorshift64 generator folded into an FNV-1a hash, then completes with
//! `{"iterations": n, "result": "<16 hex digits>"}`.
//!
//! Every round depends on the previous one and the result is returned, so
//! the optimizer can neither drop the loop nor replace it with a formula; the
//! output is the same on every run for the same `iterations`.

use serde_json::json;
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "compute",
    version: "0.1.0",
    entry: "work",
    nodes: { "work" => work },
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// `iterations` rounds of xorshift64 (Marsaglia's 13/7/17 triple), each
/// state folded byte by byte into an FNV-1a hash.
fn mix(iterations: u64) -> u64 {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = FNV_OFFSET;
    for _ in 0..iterations {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        for byte in state.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash
}

fn work(ctx: &Context) -> NodeResult {
    let iterations: u64 = ctx.var_or("iterations", 1_000_000)?;
    let result = mix(iterations);
    Ok(Plan::complete(&json!({
        "iterations": iterations,
        "result": format!("{result:016x}"),
    })))
}
