//! The rollout chart: ready, updated and unavailable replicas as step lines over time, one
//! dashed marker where each commit came into force, drawn server-side as inline SVG.

use crate::layout::{short, utc_ms};
use crate::timeline::Sample;
use kommit_reconcilers::Millis;
use maud::{html, Markup};
use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 36.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 28.0;

/// The chart of `samples` (oldest first) up to `now` (the state's time).
pub fn rollout(samples: &[&Sample], now: Millis) -> Markup {
    let Some(first) = samples.first() else {
        return html! { p.muted { "No samples recorded yet." } };
    };
    let t0 = first.at;
    let t1 = now.max(samples.last().map_or(t0, |s| s.at)).max(t0 + 1);
    let ymax = samples
        .iter()
        .map(|s| s.desired.max(s.ready).max(s.updated).max(s.unavailable))
        .max()
        .unwrap_or(0)
        .max(1);
    let x =
        |t: Millis| LEFT + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * (W - LEFT - RIGHT);
    let y = |v: u32| TOP + (1.0 - f64::from(v) / f64::from(ymax)) * (H - TOP - BOTTOM);
    let series = |get: fn(&Sample) -> u32| {
        let mut d = String::new();
        let mut prev: Option<f64> = None;
        for s in samples {
            let (px, py) = (x(s.at), y(get(s)));
            match prev {
                None => {
                    let _ = write!(d, "M{px:.1},{py:.1}");
                }
                Some(_) => {
                    let _ = write!(d, " H{px:.1} V{py:.1}");
                }
            }
            prev = Some(py);
        }
        let _ = write!(d, " H{:.1}", x(t1));
        d
    };
    let mut markers: Vec<(f64, &str)> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        if i == 0 || samples[i - 1].commit != s.commit {
            markers.push((x(s.at), s.commit.as_str()));
        }
    }
    let ticks: Vec<u32> = if ymax <= 5 {
        (0..=ymax).collect()
    } else {
        (0..=4).map(|i| ymax * i / 4).collect()
    };
    html! {
        svg.chart viewBox={"0 0 " (W) " " (H)} role="img"
            aria-label={"Replicas over time: ready, updated and unavailable, " (samples.len()) " samples"} {
            @for t in &ticks {
                line.grid x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(*t))) y2=(format!("{:.1}", y(*t))) {}
                text x=(LEFT - 6.0) y=(format!("{:.1}", y(*t) + 4.0)) text-anchor="end" { (t) }
            }
            @for (mx, commit) in &markers {
                line.commit x1=(format!("{mx:.1}")) x2=(format!("{mx:.1}")) y1=(TOP - 4.0) y2=(H - BOTTOM) {}
                text.commit-label x=(format!("{:.1}", mx + 3.0)) y=(TOP - 8.0) data-commit=(commit) { (short(commit)) }
            }
            path.ready fill="none" stroke-width="2" d=(series(|s| s.ready)) {}
            path.updated fill="none" stroke-width="2" stroke-dasharray="6 3" d=(series(|s| s.updated)) {}
            path.unavailable fill="none" stroke-width="2" d=(series(|s| s.unavailable)) {}
            text x=(LEFT) y=(H - 8.0) { (utc_ms(t0)) }
            text x=(W - RIGHT) y=(H - 8.0) text-anchor="end" { (utc_ms(t1)) }
        }
        p.legend {
            span.ready { "━ ready" } span.updated { "╍ updated" } span.unavailable { "━ unavailable" }
            span.muted { "┆ commit in force from here" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Millis, commit: &str, ready: u32, updated: u32, unavailable: u32) -> Sample {
        Sample {
            at,
            commit: commit.into(),
            desired: 3,
            ready,
            updated,
            unavailable,
        }
    }

    #[test]
    fn a_marker_per_commit_and_one_path_per_series() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let s = [
            sample(1_000, &a, 0, 0, 2),
            sample(2_000, &a, 2, 2, 0),
            sample(3_000, &b, 2, 0, 1),
            sample(4_000, &b, 3, 3, 0),
        ];
        let refs: Vec<&Sample> = s.iter().collect();
        let svg = rollout(&refs, 5_000).into_string();
        assert_eq!(svg.matches("<line class=\"commit\"").count(), 2, "{svg}");
        assert!(svg.contains(&format!("data-commit=\"{b}\"")));
        assert!(svg.contains(">bbbbbbbbbbbb</text>"));
        assert_eq!(svg.matches("<path").count(), 3);
        // Ready starts at 0 (bottom: y = H - BOTTOM) and ends at 3 (top).
        assert!(
            svg.contains("class=\"ready\" fill=\"none\" stroke-width=\"2\" d=\"M36.0,192.0"),
            "{svg}"
        );
    }

    #[test]
    fn no_samples_say_so() {
        assert!(rollout(&[], 0).into_string().contains("No samples"));
    }
}
