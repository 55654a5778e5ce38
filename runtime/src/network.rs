//! Pod network (placeholder being filled in).

/// Network errors.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Netlink failure.
    #[error("netlink: {0}")]
    Netlink(String),
}
