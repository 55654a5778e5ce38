//! fake (being written)
