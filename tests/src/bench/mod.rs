//! Benchmark bodies for `kommit-bench`, one module per subcommand.

pub mod runtime;
