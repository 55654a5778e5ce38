//! Placeholder crate root; see ARCHITECTURE.md.
