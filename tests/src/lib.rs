//! kommit test support.
