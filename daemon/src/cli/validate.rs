//! `kommit validate [PATH]`: what CI runs before a merge. It applies exactly the checks the
//! cluster applies before adopting a commit.

use anyhow::Context;
use kommit_schemas::{Diagnostic, Limits, SourceTree};
use std::path::{Path, PathBuf};

/// Arguments of `kommit validate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A repository root, a directory or a single file.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Largest manifest file, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_file_bytes: u64,
    /// Largest total of all manifest files, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_total_bytes: u64,
}

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `path:line:col: error: message` lines and a summary.
    Text,
    /// One JSON document.
    Json,
}

/// Runs the command and returns its exit code: 0 valid, 1 invalid, 2 usage error.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let meta = match std::fs::metadata(&args.path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("kommit validate: {}: {e}", args.path.display());
            return Ok(2);
        }
    };
    let limits = Limits {
        max_file_bytes: args.max_file_bytes,
        max_total_bytes: args.max_total_bytes,
        ..Limits::default()
    };
    let tree = if meta.is_dir() {
        crate::fstree::read_dir_tree(&args.path, &limits)
            .with_context(|| format!("reading {}", args.path.display()))?
    } else {
        crate::fstree::read_single_file(&args.path, &limits)
            .with_context(|| format!("reading {}", args.path.display()))?
    };
    let files = tree
        .files
        .iter()
        .filter(|f| kommit_schemas::source::is_manifest_path(&f.path))
        .count();
    let (result, warnings) = kommit_schemas::load::validate_with_warnings(&tree, &limits);
    let (diags, objects) = match &result {
        Ok(state) => (Vec::new(), state.object_ids().len()),
        Err(d) => (d.clone(), 0),
    };
    match args.format {
        Format::Text => {
            for w in &warnings {
                println!("{}", w.warning_line());
            }
            print_text(&diags, files, objects)
        }
        Format::Json => print_json(&args.path, &diags, &warnings, files, objects)?,
    }
    Ok(if diags.is_empty() { 0 } else { 1 })
}

fn print_text(diags: &[Diagnostic], files: usize, objects: usize) {
    for d in diags {
        println!("{d}");
    }
    if diags.is_empty() {
        println!(
            "ok: {objects} object{} in {files} file{} {} valid",
            if objects == 1 { "" } else { "s" },
            if files == 1 { "" } else { "s" },
            if objects == 1 { "is" } else { "are" }
        );
    } else {
        let in_files = diags
            .iter()
            .map(|d| d.path.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        println!(
            "{} error{} in {in_files} file{} ({files} file{} checked)",
            diags.len(),
            if diags.len() == 1 { "" } else { "s" },
            if in_files == 1 { "" } else { "s" },
            if files == 1 { "" } else { "s" }
        );
    }
}

fn print_json(
    root: &Path,
    diags: &[Diagnostic],
    warnings: &[Diagnostic],
    files: usize,
    objects: usize,
) -> anyhow::Result<()> {
    let entry = |d: &Diagnostic, severity: &str| {
        serde_json::json!({
            "path": d.path,
            "line": d.line,
            "col": d.col,
            "severity": severity,
            "message": d.message,
        })
    };
    let out = serde_json::json!({
        "path": root.display().to_string(),
        "valid": diags.is_empty(),
        "files": files,
        "objects": objects,
        "diagnostics": diags
            .iter()
            .map(|d| entry(d, "error"))
            .chain(warnings.iter().map(|d| entry(d, "warning")))
            .collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Reads and validates a directory; the daemon's local dry-run and tests use this.
pub fn validate_dir(
    root: &Path,
) -> anyhow::Result<Result<kommit_schemas::DesiredState, Vec<Diagnostic>>> {
    let limits = Limits::default();
    let tree: SourceTree = crate::fstree::read_dir_tree(root, &limits)?;
    Ok(kommit_schemas::validate(&tree, &limits))
}
