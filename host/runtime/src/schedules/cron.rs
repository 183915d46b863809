//! Cron expressions read in a time zone, with `croner` and `chrono-tz`.
//!
//! Six fields (seconds first) or five (seconds 0). Across daylight-saving
//! changes, as classic cron does: a fixed time of day (single second,
//! minute and hour) that a spring-forward gap skips fires once, at the
//! first valid time after the gap, and one that a fall-back repeats fires
//! once (its first occurrence); an interval or wildcard expression
//! (`0 */30 * * * *`) fires at every real instant whose wall-clock time
//! matches, so in a repeated hour it fires in both passes (croner alone
//! leaves out the second pass; [`CronSpec::next_after`] adds it).

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::{Cron, JobType};

use super::ScheduleError;

/// A parsed expression and zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: Cron,
    zone: Tz,
    /// Not a fixed time of day: fires in both passes of a repeated hour.
    interval: bool,
}

impl CronSpec {
    /// Parses `expr` in the IANA zone `zone`; checks that it has an
    /// instant at all.
    pub fn parse(expr: &str, zone: &str) -> Result<Self, ScheduleError> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(ScheduleError::InvalidCron {
                expr: expr.to_owned(),
                reason: format!("it has {fields} fields; expected 6 (seconds first) or 5"),
            });
        }
        let cron = Cron::from_str(expr).map_err(|e| ScheduleError::InvalidCron {
            expr: expr.to_owned(),
            reason: e.to_string(),
        })?;
        let zone =
            Tz::from_str(zone).map_err(|_| ScheduleError::UnknownTimeZone(zone.to_owned()))?;
        let interval = cron.determine_job_type() == JobType::IntervalWildcard;
        let spec = Self {
            cron,
            zone,
            interval,
        };
        if spec.next_after(0).is_none() {
            return Err(ScheduleError::InvalidCron {
                expr: expr.to_owned(),
                reason: "it matches no instant".to_owned(),
            });
        }
        Ok(spec)
    }

    /// The first instant strictly after `after_ms` (ms since the epoch),
    /// on a whole second; None if there is none (before year 5000).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        // Instants are whole seconds; croner keeps the start's fraction of
        // a second, so it starts from the whole second.
        let after = i64::try_from(after_ms / 1000 * 1000).ok()?;
        let start: DateTime<Tz> = Utc
            .timestamp_millis_opt(after)
            .single()?
            .with_timezone(&self.zone);
        // Croner maps an ambiguous wall time to its first pass, which may
        // lie before `after`: such an answer does not count.
        let next = self
            .cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|n| n.timestamp_millis())
            .filter(|&n| n > after);
        let next = if self.interval {
            self.second_pass(after, next)
        } else if next.is_none() && self.cron.find_next_occurrence(&start, false).is_ok() {
            // `after` lies in a repeated hour's second pass, past the first
            // pass of today's time: that time has fired; the next is the
            // following one, found from beyond the repeated hour.
            let beyond = after.checked_add(3_600_000)?;
            let start = Utc
                .timestamp_millis_opt(beyond)
                .single()?
                .with_timezone(&self.zone);
            self.cron
                .find_next_occurrence(&start, false)
                .ok()
                .map(|n| n.timestamp_millis())
                .filter(|&n| n > after)
        } else {
            next
        }?;
        u64::try_from(next).ok()
    }

    /// For an interval expression: the earliest of croner's `next` and the
    /// next match in each fixed offset the zone has at `after` and at
    /// `next`, where the zone really has that offset then. That finds the
    /// second pass of a repeated hour, which croner leaves out.
    fn second_pass(&self, after: i64, next: Option<i64>) -> Option<i64> {
        let offset_at = |ms: i64| {
            Utc.timestamp_millis_opt(ms)
                .single()
                .map(|t| self.zone.offset_from_utc_datetime(&t.naive_utc()).fix())
        };
        let start = Utc.timestamp_millis_opt(after).single()?;
        let mut best = next;
        for offset in [offset_at(after), next.and_then(offset_at)]
            .into_iter()
            .flatten()
        {
            let from: DateTime<FixedOffset> = start.with_timezone(&offset);
            let Ok(candidate) = self.cron.find_next_occurrence(&from, false) else {
                continue;
            };
            let ms = candidate.timestamp_millis();
            if ms > after && best.is_none_or(|b| ms < b) && offset_at(ms) == Some(offset) {
                best = Some(ms);
            }
        }
        best
    }

    /// The first instant at or after `at_ms`.
    pub fn next_from(&self, at_ms: u64) -> Option<u64> {
        self.next_after(at_ms.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_whole_seconds_after_a_fractional_start() {
        let every = CronSpec::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(every.next_after(1_000_500), Some(1_001_000));
        assert_eq!(every.next_after(1_000_000), Some(1_001_000));
        assert_eq!(every.next_after(999_999), Some(1_000_000));
        assert_eq!(every.next_from(1_000_000), Some(1_000_000));
        let minutely = CronSpec::parse("0 * * * *", "UTC").unwrap();
        assert_eq!(minutely.next_after(59_999), Some(3_600_000));
    }

    #[test]
    fn a_fixed_time_goes_on_from_inside_a_repeated_hours_second_pass() {
        // New York falls back on 2027-11-07: 01:10 EST is the second pass
        // of 01:00-02:00, after 01:30 EDT fired. The next is the 8th.
        let daily = CronSpec::parse("0 30 1 * * *", "America/New_York").unwrap();
        let at_0110_est = 1_825_567_800_000;
        assert_eq!(daily.next_after(at_0110_est), Some(1_825_655_400_000));
    }
}
