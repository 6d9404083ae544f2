//! What a drill measured, how its outcomes are counted, and the table the report prints.

use std::collections::BTreeMap;

use serde::Serialize;

use super::super::load::{Mix, Outcome};

/// What one drill measured.
#[derive(Debug, Clone, Serialize)]
pub struct DrillResult {
    pub name: &'static str,
    /// The traffic during the drill.
    pub load: &'static str,
    pub requests: usize,
    /// Requests without a usable answer, by status (`"no response"` for none), counting a
    /// fast 503 `database_unavailable` separately.
    pub failed: usize,
    pub failures: BTreeMap<String, usize>,
    /// Rows missing from `requests_log` for requests an instance answered.
    pub lost_log_rows: usize,
    /// The slowest 503 `database_unavailable` (database outage only).
    pub slowest_503_ms: Option<u64>,
    /// From the database's return to the first of an unbroken run of successful writes.
    pub recovery_ms: Option<u64>,
    pub goal: String,
    pub passed: bool,
    pub note: String,
}

pub(super) fn mix_name(mix: Mix) -> &'static str {
    match mix {
        Mix::Reads => "GET /server-info",
        Mix::ReadsAndWrites => "GET /server-info + POST /api/users",
    }
}

pub(super) fn tally(
    name: &'static str,
    mix: Mix,
    outcomes: &[Outcome],
    lost_log_rows: usize,
    goal: &str,
) -> DrillResult {
    let mut failures = BTreeMap::new();
    for o in outcomes.iter().filter(|o| !o.ok()) {
        let key = match (o.status, o.code.as_deref()) {
            (None, _) => "no response".to_owned(),
            (Some(s), Some(code)) => format!("{s} {code}"),
            (Some(s), None) => s.to_string(),
        };
        *failures.entry(key).or_insert(0) += 1;
    }
    DrillResult {
        name,
        load: mix_name(mix),
        requests: outcomes.len(),
        failed: failures.values().sum(),
        failures,
        lost_log_rows,
        slowest_503_ms: None,
        recovery_ms: None,
        goal: goal.to_owned(),
        passed: false,
        note: String::new(),
    }
}

/// The drills as a markdown table (also what the terminal report shows).
pub fn table(drills: &[DrillResult]) -> String {
    let mut out = String::from(
        "| drill | load | requests | failed | lost log rows | slowest 503 | recovery | goal | result |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for d in drills {
        let failed = if d.failures.is_empty() {
            "0".to_owned()
        } else {
            d.failures
                .iter()
                .map(|(k, n)| format!("{n} ({k})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v} ms"));
        out.push_str(&format!(
            "| {} | {} | {} | {failed} | {} | {} | {} | {} | {} |\n",
            d.name,
            d.load,
            d.requests,
            d.lost_log_rows,
            ms(d.slowest_503_ms),
            ms(d.recovery_ms),
            d.goal,
            if d.passed { "PASS" } else { "FAIL" }
        ));
    }
    for d in drills.iter().filter(|d| !d.note.is_empty()) {
        out.push_str(&format!("\n- {}: {}", d.name, d.note));
    }
    out.push('\n');
    out
}
