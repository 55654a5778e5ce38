//! Test images without the internet (kept as a path for the tests; the code lives in
//! [`crate::images::busybox`]).

pub use crate::images::busybox::*;
