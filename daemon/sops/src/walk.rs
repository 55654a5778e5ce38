//! The walk SOPS makes over a document: every scalar in document order, with its key path.

use kommit_schemas::tree::Tree;

/// What is called on each scalar: the value, its SOPS path, its display path.
pub(crate) type Visit<'a, E> = dyn FnMut(&mut Tree, &[String], &str) -> Result<(), E> + 'a;

/// Calls `f` on every scalar (not null) of `tree` in document order with its SOPS path (the
/// mapping keys from the root; sequence items share their parent's) and its display path
/// (`a.b[1].c`).
pub(crate) fn scalars<E>(tree: &mut Tree, f: &mut Visit<'_, E>) -> Result<(), E> {
    let mut path = Vec::new();
    let mut shown = String::new();
    walk(tree, &mut path, &mut shown, f)
}

fn walk<E>(
    tree: &mut Tree,
    path: &mut Vec<String>,
    shown: &mut String,
    f: &mut Visit<'_, E>,
) -> Result<(), E> {
    match tree {
        Tree::Map(entries) => {
            for (k, v) in entries {
                let len = shown.len();
                if !shown.is_empty() {
                    shown.push('.');
                }
                shown.push_str(k);
                path.push(k.clone());
                walk(v, path, shown, f)?;
                path.pop();
                shown.truncate(len);
            }
        }
        Tree::Seq(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                let len = shown.len();
                shown.push_str(&format!("[{i}]"));
                walk(v, path, shown, f)?;
                shown.truncate(len);
            }
        }
        Tree::Null => {}
        leaf => f(leaf, path, shown)?,
    }
    Ok(())
}

/// SOPS's additional data for a value: its path joined with `:`, and a trailing `:`.
pub(crate) fn aad(path: &[String]) -> Vec<u8> {
    let mut out = path.join(":");
    out.push(':');
    out.into_bytes()
}
