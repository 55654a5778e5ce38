//! `kommit get -w`: the list, then every object again each time it changes, as `kubectl get
//! -w` prints them. The state is followed with blocking queries on the node's local API
//! (`/state?index=N`), so an idle watch costs the daemon nothing.

use super::get::{fetch_state_after, print_out, render, Args, Output};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one blocking query waits before it is asked again.
const WAIT: Duration = Duration::from_secs(55);

/// The rows that differ from `seen` (by identity, ignoring the AGE column, which changes
/// with the clock, not the object), recorded into `seen`. `rows[0]` is the header.
pub fn changed_rows(
    seen: &mut BTreeMap<String, Vec<String>>,
    rows: &[Vec<String>],
    namespaced: bool,
) -> Vec<Vec<String>> {
    let Some((head, body)) = rows.split_first() else {
        return Vec::new();
    };
    let age = head.iter().position(|h| h == "AGE");
    let ids = if namespaced { 2 } else { 1 };
    let mut out = Vec::new();
    for r in body {
        let key = r.iter().take(ids).cloned().collect::<Vec<_>>().join("/");
        let compared: Vec<String> = r
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != age)
            .map(|(_, c)| c.clone())
            .collect();
        if seen.get(&key) != Some(&compared) {
            seen.insert(key, compared);
            out.push(r.clone());
        }
    }
    out
}

/// The items that differ from `seen`, by `namespace/name`, recorded into `seen`.
pub fn changed_items(seen: &mut BTreeMap<String, String>, items: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for item in items {
        let meta = &item["metadata"];
        let key = format!(
            "{}/{}",
            meta["namespace"].as_str().unwrap_or(""),
            meta["name"].as_str().unwrap_or("")
        );
        let text = item.to_string();
        if seen.get(&key) != Some(&text) {
            seen.insert(key, text);
            out.push(item);
        }
    }
    out
}

fn line(r: &[String], widths: &mut Vec<usize>) -> String {
    widths.resize(widths.len().max(r.len()), 0);
    let cells: Vec<String> = r
        .iter()
        .enumerate()
        .map(|(i, c)| {
            widths[i] = widths[i].max(c.chars().count());
            format!("{c:<w$}", w = widths[i])
        })
        .collect();
    format!("{}\n", cells.join("   ").trim_end())
}

/// Runs `kommit get ... -w` until interrupted or the node goes away.
pub fn run(args: &Args) -> anyhow::Result<u8> {
    let mut index = 0;
    let mut seen_rows = BTreeMap::new();
    let mut seen_items = BTreeMap::new();
    let mut widths: Vec<usize> = Vec::new();
    let mut first = true;
    loop {
        let (at, state) = fetch_state_after(
            &args.data_dir,
            index,
            if first { Duration::ZERO } else { WAIT },
        )?;
        if !first && at == index {
            continue;
        }
        index = at;
        let (items, rows) = render(args, &state, crate::consensus::now_ms());
        let mut text = String::new();
        match args.output {
            Some(Output::Json) => {
                for item in changed_items(&mut seen_items, items) {
                    text.push_str(&serde_json::to_string_pretty(&item)?);
                    text.push('\n');
                }
            }
            Some(Output::Yaml) => {
                for item in changed_items(&mut seen_items, items) {
                    text.push_str("---\n");
                    text.push_str(&serde_saphyr::to_string(&item)?);
                }
            }
            _ => {
                if first {
                    // The header and the first rows set the column widths, as kubectl's.
                    for r in &rows {
                        for (i, c) in r.iter().enumerate() {
                            widths.resize(widths.len().max(i + 1), 0);
                            widths[i] = widths[i].max(c.chars().count());
                        }
                    }
                    if let Some(h) = rows.first().filter(|_| rows.len() > 1) {
                        text.push_str(&line(h, &mut widths));
                    }
                }
                for r in changed_rows(&mut seen_rows, &rows, args.all_namespaces) {
                    text.push_str(&line(&r, &mut widths));
                }
            }
        }
        first = false;
        print_out(&text)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(lines: &[&str]) -> Vec<Vec<String>> {
        lines
            .iter()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    }

    #[test]
    fn only_changed_rows_come_again_and_age_alone_is_no_change() {
        let mut seen = BTreeMap::new();
        let head = "NAME READY STATUS RESTARTS AGE";
        let first = rows(&[head, "a 0/1 Pending 0 1s", "b 1/1 Running 0 5s"]);
        assert_eq!(changed_rows(&mut seen, &first, false).len(), 2);
        let cases = [
            (
                vec![head, "a 0/1 Pending 0 2s", "b 1/1 Running 0 6s"],
                vec![],
            ),
            (
                vec![head, "a 1/1 Running 0 3s", "b 1/1 Running 0 7s"],
                vec!["a 1/1 Running 0 3s"],
            ),
            (
                vec![
                    head,
                    "a 1/1 Running 0 3s",
                    "b 1/1 Running 0 7s",
                    "c 0/1 Pending 0 0s",
                ],
                vec!["c 0/1 Pending 0 0s"],
            ),
        ];
        for (now, want) in cases {
            assert_eq!(changed_rows(&mut seen, &rows(&now), false), rows(&want));
        }
        // With a namespace column, the same name in two namespaces is two objects.
        let mut seen = BTreeMap::new();
        let ns = rows(&["NAMESPACE NAME AGE", "x a 1s", "y a 1s"]);
        assert_eq!(changed_rows(&mut seen, &ns, true).len(), 2);
    }

    #[test]
    fn only_changed_items_come_again() {
        let pod = |name: &str, phase: &str| serde_json::json!({"metadata": {"namespace": "default", "name": name}, "status": {"phase": phase}});
        let mut seen = BTreeMap::new();
        assert_eq!(
            changed_items(&mut seen, vec![pod("a", "Pending"), pod("b", "Running")]).len(),
            2
        );
        assert_eq!(
            changed_items(&mut seen, vec![pod("a", "Running"), pod("b", "Running")]),
            vec![pod("a", "Running")]
        );
        assert!(changed_items(&mut seen, vec![pod("a", "Running")]).is_empty());
    }
}
