//! `kommit log [PATH-OR-URL] [--format json] [-n N]`: the auditor's view.
//!
//! Needs only the repository: each commit of the recent window with its
//! `refs/notes/kommit` note (adopted, refused with its errors, superseded and by what, acks).
//! A URL is fetched (branch + notes only) into a throw-away bare repo first.

use std::path::PathBuf;

use anyhow::Context;
use gix::ObjectId;
use serde::Serialize;

use crate::git::mirror::{Mirror, RemoteConfig};
use crate::git::note::{self, StatusNote};
use crate::git::NOTES_REF;

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One block per commit.
    Text,
    /// A JSON array.
    Json,
}

/// Arguments of `kommit log`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A repository path (bare or not) or a remote URL.
    #[arg(default_value = ".")]
    pub repo: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// How many commits, newest first.
    #[arg(short = 'n', long = "max-count", default_value_t = 20)]
    pub max_count: usize,
    /// Branch to read (default: HEAD for a path, `main` for a URL).
    #[arg(long)]
    pub branch: Option<String>,
}

/// One commit as the auditor sees it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LogEntry {
    /// Commit id.
    pub commit: String,
    /// First line of the message.
    pub summary: String,
    /// The kommit note, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<StatusNote>,
    /// Why the note could not be read, if it exists but is not a kommit note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note_error: Option<String>,
}

/// Most commits `-n` accepts.
pub const MAX_COUNT: usize = 10_000;

fn is_url(s: &str) -> bool {
    s.contains("://") || (s.contains(':') && !s.starts_with('/') && !PathBuf::from(s).exists())
}

/// Reads the log of `repo` at `branch` (or HEAD).
pub fn collect(
    repo: &gix::Repository,
    branch: Option<&str>,
    max_count: usize,
) -> anyhow::Result<Vec<LogEntry>> {
    let head_name = branch.map_or_else(|| "HEAD".to_owned(), |b| format!("refs/heads/{b}"));
    let head: ObjectId = repo
        .find_reference(head_name.as_str())
        .with_context(|| format!("no {head_name} in {}", repo.path().display()))?
        .peel_to_id()
        .with_context(|| format!("resolving {head_name}"))?
        .detach();
    let notes = match repo.try_find_reference(NOTES_REF)? {
        Some(mut r) => Some(r.peel_to_id()?.detach()),
        None => None,
    };
    let mut out = Vec::new();
    for info in repo.rev_walk([head]).all()?.take(max_count.min(MAX_COUNT)) {
        let id = info?.id;
        let commit = repo.find_commit(id)?;
        use gix::bstr::ByteSlice;
        let summary = commit
            .message_raw_sloppy()
            .lines()
            .next()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .unwrap_or_default();
        let (note, note_error) = match note::read(repo, notes, id) {
            Ok(n) => (n, None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(LogEntry {
            commit: id.to_string(),
            summary,
            note,
            note_error,
        });
    }
    Ok(out)
}

/// The text rendering.
pub fn render_text(entries: &[LogEntry]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for e in entries {
        let short = &e.commit[..12.min(e.commit.len())];
        match &e.note {
            None => {
                let _ = writeln!(s, "{short} (not seen)  {}", e.summary);
            }
            Some(n) => {
                let mut head = format!("{short} {} {}", n.state.as_str(), n.at);
                if let Some(by) = &n.superseded_by {
                    let _ = write!(head, " by {}", &by[..12.min(by.len())]);
                }
                if let Some(node) = &n.by {
                    let _ = write!(head, " (leader {node})");
                }
                let _ = writeln!(s, "{head}  {}", e.summary);
                if let Some(r) = &n.reason {
                    let _ = writeln!(s, "    reason: {r}");
                }
                for d in &n.diagnostics {
                    let _ = writeln!(s, "    error: {d}");
                }
                if !n.acks.is_empty() {
                    let acks: Vec<String> = n
                        .acks
                        .iter()
                        .map(|(node, at)| format!("{node}@{at}"))
                        .collect();
                    let _ = writeln!(s, "    acks: {}", acks.join(", "));
                }
                for (obj, h) in &n.objects {
                    let health = serde_json::to_value(h.health)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let msg = h
                        .message
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default();
                    let _ = writeln!(s, "    object {obj}: {health}{msg}");
                }
            }
        }
        if let Some(err) = &e.note_error {
            let _ = writeln!(s, "    note unreadable: {err}");
        }
    }
    s
}

/// Runs the command and returns its exit code.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut tmp = None;
    let repo = if is_url(&args.repo) {
        let branch = args.branch.clone().unwrap_or_else(|| "main".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("kommit-log-{}-{nanos}", std::process::id()));
        let mirror = Mirror::open(&dir, RemoteConfig::new(args.repo.clone(), branch.clone()))?;
        tmp = Some(dir);
        mirror
            .fetch()
            .with_context(|| format!("fetching {}", args.repo))?;
        mirror.repo()?
    } else {
        gix::open(&args.repo).with_context(|| format!("opening repository {}", args.repo))?
    };
    let branch = if tmp.is_some() {
        Some(args.branch.clone().unwrap_or_else(|| "main".into()))
    } else {
        args.branch.clone()
    };
    let result = collect(&repo, branch.as_deref(), args.max_count);
    if let Some(dir) = tmp {
        let _ = std::fs::remove_dir_all(dir);
    }
    let entries = result?;
    match args.format {
        Format::Text => print!("{}", render_text(&entries)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
    }
    Ok(0)
}
