//! Git: kommit's only write interface and its audit log.
//!
//! The module is split along the life of a commit:
//!
//! - [`mirror`]: a bare mirror under the data dir, fetched with gix over `file://`, plain
//!   paths, `git://`, `ssh://` (key + pinned host key) and `https://` (token or basic auth,
//!   optional private CA), all from node config. Only the configured branch and
//!   `refs/notes/kommit` are fetched.
//! - [`read`]: the loader's input built straight from the object database at a SHA (no
//!   worktree), with blob sizes checked from the object header before any content is read.
//! - [`heads`]: new-head detection, commits between old and new head, fast-forward check, the
//!   (pure) rewrite decision, and [`heads::evaluate`], the leader's one call per fetched head
//!   (adopt the loaded commit, or refuse it with the note to write).
//! - [`triggers`]: what makes the leader fetch now: a poll interval, a webhook router, a
//!   notify watch on a local remote's refs.
//! - [`note`] and [`status`]: the plain data written back (a YAML note per seen commit,
//!   one commit of readable files per status change on `kommit/status`), documented by
//!   `schemas/status.schema.json`.
//! - [`queue`]: the durable redb outbox of writes not yet pushed.
//! - [`loader`]: the `kommit_schemas` types this module produces and consumes.
//! - [`time`]: caller-supplied timestamps and their RFC 3339 form.
//! - [`push`]: one synchronisation round: fetch the remote notes and status refs, merge the
//!   pending writes on top (notes: union per commit; status: re-applied), write locally with
//!   gix and push with `git push --atomic --force-with-lease`.
//! - [`writer`]: the async driver that coalesces pushes and backs off on failure.
//!
//! Every gix call is blocking; async callers reach them only through `spawn_blocking`.
//! Nothing here reads the clock for content: timestamps are arguments.

pub mod heads;
pub mod loader;
pub mod mirror;
pub mod note;
pub mod push;
pub mod queue;
pub mod read;
pub mod signing;
pub mod status;
pub mod time;
pub mod triggers;
pub mod writer;

/// The notes reference kommit writes and fetches.
pub const NOTES_REF: &str = "refs/notes/kommit";
/// The status branch, as a full reference name.
pub const STATUS_REF: &str = "refs/heads/kommit/status";
