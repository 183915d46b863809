//! Flow control: what a run carries so that hosts sharing a store start it
//! only when its concurrency key has a free slot and its workflow's start
//! rate allows, and in what order queued runs are admitted.
//!
//! A slot is not a stored counter: the runs of a key that hold one are the
//! key's runs that are `running` or `waiting`. Admitting a queued run moves
//! it to `running` in a commit, so a slot is taken and given back exactly
//! when a run's status says so, and a crash between two commits can neither
//! lose a queued run nor free a slot twice.

use serde::{Deserialize, Serialize};

use crate::ledger::sha256_hex;
use crate::model::RunState;

/// The longest concurrency key, in bytes.
pub const MAX_CONCURRENCY_KEY_LEN: usize = 200;

/// A run's flow-control settings, fixed when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowControl {
    /// At most `limit` runs with this key hold a slot at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Higher goes first among a queue's runs; ties go in start order.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// The start order: increasing in the order runs were created by one
    /// process, and by creation time across processes.
    pub ticket: u64,
}

/// A concurrency key and its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concurrency {
    /// Runs sharing the key share its slots (for example `customer:42`).
    pub key: String,
    /// How many of them may hold a slot at once; at least 1.
    pub limit: u32,
}

/// Why a concurrency key or limit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The key is empty, too long, or has control characters.
    #[error(
        "concurrency key must be 1 to {MAX_CONCURRENCY_KEY_LEN} bytes without control characters"
    )]
    BadKey,
    /// The limit is below 1.
    #[error("concurrency limit must be at least 1")]
    ZeroLimit,
    /// The limit is past what a limit can be (`u32::MAX`).
    #[error("concurrency limit {0} is out of range")]
    LimitOutOfRange(i64),
    /// A start rate that does not read as `<count>/<s|m|h>` with a count
    /// of at least 1.
    #[error("start rate '{0}' is not <count>/s, <count>/m or <count>/h with a count of at least 1")]
    BadRate(String),
}

impl Concurrency {
    /// A checked key and limit.
    pub fn new(key: impl Into<String>, limit: u32) -> Result<Self, FlowError> {
        let key = key.into();
        if key.is_empty()
            || key.len() > MAX_CONCURRENCY_KEY_LEN
            || key.chars().any(char::is_control)
        {
            return Err(FlowError::BadKey);
        }
        if limit == 0 {
            return Err(FlowError::ZeroLimit);
        }
        Ok(Self { key, limit })
    }

    /// [`Concurrency::new`] with the limit as a caller typed it (a command
    /// line, a JSON number): below 1 is [`FlowError::ZeroLimit`].
    pub fn from_signed(key: impl Into<String>, limit: i64) -> Result<Self, FlowError> {
        let limit = u32::try_from(limit.max(0)).map_err(|_| FlowError::LimitOutOfRange(limit))?;
        Self::new(key, limit)
    }
}

impl RunState {
    /// The concurrency key and limit the run carries, if any.
    pub fn concurrency(&self) -> Option<&Concurrency> {
        self.flow.as_ref().and_then(|f| f.concurrency.as_ref())
    }
}

/// The queue a queued run waits in: its concurrency key's, or, for a run
/// held back only by its workflow's start rate, its workflow's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Queue {
    /// Runs sharing a concurrency key.
    Key(String),
    /// Runs of a workflow without a concurrency key.
    Workflow(String),
}

impl Queue {
    /// The queue `run` waits in while it is queued.
    pub fn of(run: &RunState) -> Self {
        match run.concurrency() {
            Some(c) => Self::Key(c.key.clone()),
            None => Self::Workflow(run.workflow_id.clone()),
        }
    }

    /// The lease a host holds while it admits this queue's runs, so that
    /// two hosts never fill the same free slot. Hashed: a key may hold any
    /// characters, a lease key only those of an id.
    pub fn lease_key(&self) -> String {
        let name = match self {
            Self::Key(k) => format!("key:{k}"),
            Self::Workflow(w) => format!("workflow:{w}"),
        };
        format!("flow:{}", &sha256_hex(name.as_bytes())[..60])
    }
}

/// Sorts queued runs into admission order: higher priority first, then by
/// ticket (start order), then by run id.
pub fn sort_for_admission(runs: &mut [RunState]) {
    let order = |r: &RunState| {
        let (priority, ticket) = r.flow.as_ref().map_or((0, 0), |f| (f.priority, f.ticket));
        (std::cmp::Reverse(priority), ticket)
    };
    runs.sort_by(|a, b| {
        order(a)
            .cmp(&order(b))
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
}

/// A workflow's start rate: at most `count` runs begin in any window of
/// `per_ms`, across every host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartRate {
    /// Starts per window.
    pub count: u32,
    /// The window, in ms.
    pub per_ms: u64,
}

/// The most start-rate slots a rate is kept in; a larger count is spread
/// over this many slots, each reusable sooner (see [`StartRate::slots`]).
pub const MAX_RATE_SLOTS: u32 = 16;

impl StartRate {
    /// Reads `<count>/s`, `<count>/m` or `<count>/h`.
    pub fn parse(text: &str) -> Result<Self, FlowError> {
        let bad = || FlowError::BadRate(text.to_owned());
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per_ms = match unit.trim() {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        Ok(Self { count, per_ms })
    }

    /// How the rate is enforced: this many slots (leases), each held for
    /// the returned ms by the start that takes it, free again once that
    /// time has passed. With a count of at most [`MAX_RATE_SLOTS`], `count`
    /// slots held for the whole window: at most `count` starts in any
    /// half-open window `[t, t + per_ms)`. Above it, 16 slots each reused
    /// after `per_ms * 16 / count`: the same average rate, and at most
    /// `count + 16` starts in any window.
    pub fn slots(&self) -> (u32, u64) {
        let slots = self.count.min(MAX_RATE_SLOTS);
        let hold = self.per_ms * u64::from(slots) / u64::from(self.count);
        (slots, hold.max(1))
    }

    /// The lease of slot `i` of `workflow_id`'s rate.
    pub fn slot_key(workflow_id: &str, i: u32) -> String {
        format!("rate:{}:{i}", &sha256_hex(workflow_id.as_bytes())[..56])
    }
}

impl std::fmt::Display for StartRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per_ms {
            1_000 => "s",
            60_000 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_limits_are_checked() {
        assert!(Concurrency::new("customer:42", 1).is_ok());
        assert_eq!(Concurrency::new("k", 0), Err(FlowError::ZeroLimit));
        assert_eq!(Concurrency::from_signed("k", -3), Err(FlowError::ZeroLimit));
        assert_eq!(
            Concurrency::from_signed("k", 1 << 40),
            Err(FlowError::LimitOutOfRange(1 << 40))
        );
        assert_eq!(Concurrency::from_signed("k", 2).unwrap().limit, 2);
        assert_eq!(Concurrency::new("", 1), Err(FlowError::BadKey));
        assert_eq!(Concurrency::new("a\nb", 1), Err(FlowError::BadKey));
        let long = "k".repeat(MAX_CONCURRENCY_KEY_LEN + 1);
        assert_eq!(Concurrency::new(long, 1), Err(FlowError::BadKey));
    }

    #[test]
    fn rates_parse_and_spread_over_slots() {
        let r = StartRate::parse("5/s").unwrap();
        assert_eq!((r.count, r.per_ms), (5, 1_000));
        assert_eq!(r.slots(), (5, 1_000));
        assert_eq!(r.to_string(), "5/s");
        let fast = StartRate::parse("1600/m").unwrap();
        assert_eq!(fast.slots(), (16, 600));
        for bad in ["0/s", "-1/s", "5", "5/d", "x/s", "/s"] {
            assert!(StartRate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lease_keys_are_ids_whatever_the_key() {
        use crate::store::validate_id;
        let q = Queue::Key("x".repeat(MAX_CONCURRENCY_KEY_LEN));
        validate_id("lease", &q.lease_key()).unwrap();
        validate_id("lease", &Queue::Key("a/b c".into()).lease_key()).unwrap();
        validate_id("lease", &StartRate::slot_key(&"w".repeat(128), 15)).unwrap();
    }
}
