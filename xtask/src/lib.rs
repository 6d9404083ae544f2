//! Workspace chores that are not part of any shipped binary: the provider schema cut and the module-graph check.

pub mod module_graph;
pub mod schema_cut;

pub use schema_cut::{CutError, Source, cut, render, sha256_hex, tokens_of_cut};
