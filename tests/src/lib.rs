//! kommit test support.
pub mod sim;
