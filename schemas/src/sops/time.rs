//! SOPS's `lastmodified`: RFC 3339 text, and the form its MAC is bound to.

/// The additional data the MAC is encrypted with: `lastmodified` as Go's `time.RFC3339`
/// formats it (no fractional seconds; `Z` for a zero offset). Refuses anything that is not
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
pub fn mac_aad(lastmodified: &str) -> Result<String, String> {
    let bad = || {
        let shown: String = lastmodified.chars().take(40).collect();
        format!("`{shown}` is not an RFC 3339 time such as 2024-01-31T12:00:00Z")
    };
    let b = lastmodified.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return Err(bad());
    }
    let mut rest = &lastmodified[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(bad());
        }
        rest = &frac[n..];
    }
    let zone = match rest {
        "Z" => "Z".to_owned(),
        z if z.len() == 6
            && (z.starts_with('+') || z.starts_with('-'))
            && z.as_bytes()[3] == b':'
            && z.bytes()
                .enumerate()
                .all(|(i, c)| i == 0 || i == 3 || c.is_ascii_digit()) =>
        {
            if &z[1..] == "00:00" {
                "Z".to_owned()
            } else {
                z.to_owned()
            }
        }
        _ => return Err(bad()),
    };
    Ok(format!("{}{zone}", &lastmodified[..19]))
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2024-01-31T12:00:00Z`), as SOPS writes
/// `lastmodified`.
pub fn format_rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_is_go_rfc3339() {
        assert_eq!(
            mac_aad("2023-12-26T17:50:08Z").unwrap(),
            "2023-12-26T17:50:08Z"
        );
        assert_eq!(
            mac_aad("2023-12-26T17:50:08.123Z").unwrap(),
            "2023-12-26T17:50:08Z"
        );
        assert_eq!(
            mac_aad("2023-12-26T17:50:08+00:00").unwrap(),
            "2023-12-26T17:50:08Z"
        );
        assert_eq!(
            mac_aad("2023-12-26T17:50:08-05:30").unwrap(),
            "2023-12-26T17:50:08-05:30"
        );
        for bad in [
            "",
            "2023-12-26",
            "2023-12-26 17:50:08Z",
            "2023-12-26T17:50:08",
            "2023-12-26T17:50:08.Z",
            "2023-12-26T17:50:08+0000",
        ] {
            assert!(mac_aad(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_703_613_008), "2023-12-26T17:50:08Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
