//! Workspace chores that are not part of any shipped binary: the provider schema cut, the module-graph check and the size report.

pub mod module_graph;
pub mod schema_cut;
pub mod sizes;

pub use schema_cut::{CutError, Source, cut, render, sha256_hex, tokens_of_cut};
