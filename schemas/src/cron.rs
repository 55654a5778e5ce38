//! Cron schedule syntax, as CronJob's `spec.schedule` accepts it.

/// Checks a cron schedule: five fields (minute hour day-of-month month day-of-week) with
/// numbers, ranges, lists, steps and names, or a @macro.
pub fn check_cron(s: &str) -> Result<(), String> {
    let s = s.trim();
    if let Some(m) = s.strip_prefix('@') {
        return match m {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => Err(format!("unknown macro `@{m}`")),
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected 5 fields, found {}", fields.len()));
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let specs: [(&str, u32, u32, &[&str], u32); 5] = [
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day of month", 1, 31, &[], 0),
        ("month", 1, 12, &MONTHS, 1),
        ("day of week", 0, 7, &DAYS, 0),
    ];
    for (f, (what, lo, hi, names, base)) in fields.iter().zip(specs) {
        let value = |t: &str| -> Result<u32, String> {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
                return Ok(u32::try_from(i).expect("at most 12 names") + base);
            }
            let v: u32 = t
                .parse()
                .map_err(|_| format!("{what} `{t}` is not a number"))?;
            if v < lo || v > hi {
                return Err(format!("{what} {v} is out of range {lo}-{hi}"));
            }
            Ok(v)
        };
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
            let _ = step;
            if range == "*" || range == "?" {
                continue;
            }
            match range.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (value(a)?, value(b)?);
                    if a > b {
                        return Err(format!("{what} range {a}-{b} is backwards"));
                    }
                }
                None => {
                    value(range)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron() {
        for ok in [
            "*/5 * * * *",
            "0 3 * * 1-5",
            "@hourly",
            "15,45 9-17 1 jan-mar sun",
            "0 0 * * 7",
        ] {
            assert!(check_cron(ok).is_ok(), "{ok}");
        }
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "@often",
            "5-1 * * * *",
            "x * * * *",
        ] {
            assert!(check_cron(bad).is_err(), "{bad}");
        }
    }
}
