//! Many outputs gathered into one output of a list.

use pulumi_gestalt_rust::{Output, pulumi_combine};

/// Collects outputs into one output of a list (unknown if any is unknown, secret if any is).
pub fn all<T: Clone + Send + Sync + 'static>(items: Vec<Output<T>>) -> Output<Vec<T>> {
    items
        .into_iter()
        .fold(Output::new(Vec::new()), |acc, item| {
            pulumi_combine!(acc, item).map(|(mut v, x)| {
                v.push(x);
                v
            })
        })
}
