//! An event's time from a Segment message: `timestamp`, corrected for the client's clock skew
//! the way Segment corrects it.
//!
//! A client stamps each message with `timestamp` (when it happened, by the client's clock) and
//! each request with `sentAt` (when it left, by the same clock). The gateway knows when the
//! request arrived (`received_at`, by its own clock). The time between sending and receiving
//! is taken as nothing, so the client's clock is off by `received_at - sentAt`, and the event
//! happened at `timestamp + (received_at - sentAt)`.
//!
//! Invariants: every input is already a storable timestamp (whole microseconds, year 1 to
//! 9999, see `sluice_core::event::storable`), so the arithmetic is exact in microseconds; the
//! result is storable too, or `None`.

use chrono::{DateTime, Utc};
use sluice_core::event::storable;

/// The event's `ts`:
/// - `timestamp + (received_at - sent_at)` when the message has both;
/// - `timestamp` when it has no `sentAt` (nothing to correct it with);
/// - `received_at` when it has no `timestamp`, with or without `sentAt`.
///
/// `None` when the corrected time falls outside what the table can hold (years 1 to 9999).
pub fn event_time(
    timestamp: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match (timestamp, sent_at) {
        (Some(at), Some(sent)) => at.checked_add_signed(received_at.signed_duration_since(sent)).and_then(storable),
        (Some(at), None) => Some(at),
        (None, _) => Some(received_at),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{SecondsFormat, TimeDelta};
    use proptest::prelude::*;

    use super::*;

    /// Parsed and made storable, as the mapping does with every timestamp it reads.
    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).ok().and_then(|t| storable(t.with_timezone(&Utc))).expect(s)
    }

    fn show(t: Option<DateTime<Utc>>) -> Option<String> {
        t.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    #[test]
    fn the_skew_is_added_to_the_timestamp() {
        let cases = [
            // A client clock 10 s behind: everything it stamped moves 10 s later.
            ("2026-03-01T12:00:00Z", "2026-03-01T12:00:05Z", "2026-03-01T12:00:15Z", "2026-03-01T12:00:10.000000Z"),
            // Ahead by an hour and a half, with offsets on both client times.
            (
                "2026-03-01T14:00:00+02:00",
                "2026-03-01T13:30:00+01:00",
                "2026-03-01T11:00:00Z",
                "2026-03-01T10:30:00.000000Z",
            ),
            // Across a leap day and a year's end.
            ("2024-02-28T23:59:59.5Z", "2024-02-28T23:59:59.5Z", "2024-02-29T00:00:01Z", "2024-02-29T00:00:01.000000Z"),
            ("2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z", "2026-01-01T00:00:02Z", "2026-01-01T00:00:01.000000Z"),
            // Fractions: client times beyond the microsecond are truncated before the sum.
            (
                "2026-03-01T00:00:00.1234569Z",
                "2026-03-01T00:00:00.0000009Z",
                "2026-03-01T00:00:01.000001Z",
                "2026-03-01T00:00:01.123457Z",
            ),
            // A leap second in sentAt counts as the next second's start.
            ("2016-12-31T23:59:59Z", "2016-12-31T23:59:60Z", "2017-01-01T00:00:00Z", "2016-12-31T23:59:59.000000Z"),
            // A clock in India, a day ahead in the calendar.
            (
                "2026-01-01T01:00:00+05:30",
                "2026-01-01T01:00:00+05:30",
                "2025-12-31T19:30:00.25Z",
                "2025-12-31T19:30:00.250000Z",
            ),
        ];
        for (timestamp, sent_at, received_at, expected) in cases {
            let got = event_time(Some(t(timestamp)), Some(t(sent_at)), t(received_at));
            assert_eq!(show(got).as_deref(), Some(expected), "{timestamp} sent {sent_at} received {received_at}");
        }
    }

    #[test]
    fn without_both_client_times_there_is_no_correction() {
        let received = t("2026-03-01T12:00:00Z");
        let stamped = t("2020-01-01T00:00:00Z");
        assert_eq!(event_time(Some(stamped), None, received), Some(stamped));
        assert_eq!(event_time(None, Some(t("2026-03-01T11:00:00Z")), received), Some(received));
        assert_eq!(event_time(None, None, received), Some(received));
    }

    #[test]
    fn a_correction_outside_the_storable_years_is_none() {
        let received = t("2026-03-01T12:00:00Z");
        // sentAt far in the future: the correction pulls an early timestamp before year 1.
        assert_eq!(event_time(Some(t("0001-01-01T00:00:00Z")), Some(t("2026-03-01T12:00:01Z")), received), None);
        assert_eq!(event_time(Some(t("9999-12-31T23:59:59Z")), Some(t("2026-03-01T11:59:58Z")), received), None);
        let edge = event_time(Some(t("9999-12-31T23:59:58.999999Z")), Some(t("2026-03-01T11:59:59Z")), received);
        assert_eq!(show(edge).as_deref(), Some("9999-12-31T23:59:59.999999Z"));
    }

    fn storable_time() -> impl Strategy<Value = DateTime<Utc>> {
        // Years 1 to 9999, in microseconds since the epoch.
        let (lo, hi) =
            (t("0001-01-01T00:00:00Z").timestamp_micros(), t("9999-12-31T23:59:59.999999Z").timestamp_micros());
        (lo..=hi).prop_map(|us| DateTime::from_timestamp_micros(us).unwrap_or_default())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The corrected time is exactly as far from `timestamp` as `received_at` is from
        /// `sentAt`, whenever it is storable, and storable whenever it is in range.
        #[test]
        fn the_correction_is_exact(at in storable_time(), sent in storable_time(), received in storable_time()) {
            let skew = received.signed_duration_since(sent);
            match event_time(Some(at), Some(sent), received) {
                Some(ts) => {
                    prop_assert_eq!(ts.signed_duration_since(at), skew);
                    prop_assert_eq!(storable(ts), Some(ts));
                }
                None => {
                    let unbounded = at.timestamp_micros() as i128 + skew.num_microseconds().unwrap_or(0) as i128;
                    let (lo, hi) = (t("0001-01-01T00:00:00Z").timestamp_micros(), t("9999-12-31T23:59:59.999999Z").timestamp_micros());
                    prop_assert!(unbounded < lo as i128 || unbounded > hi as i128, "{} is in range", unbounded);
                }
            }
        }

        /// A client whose clock is right (sentAt = received_at) keeps its timestamps.
        #[test]
        fn a_right_clock_changes_nothing(at in storable_time(), received in storable_time(), late_ms in 0i64..60_000) {
            let sent = received - TimeDelta::milliseconds(late_ms);
            if let Some(ts) = event_time(Some(at), Some(sent), received) {
                prop_assert_eq!(ts - at, TimeDelta::milliseconds(late_ms));
            }
            prop_assert_eq!(event_time(Some(at), Some(received), received), Some(at));
        }
    }
}
