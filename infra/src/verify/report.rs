//! What `infra verify` found, as a terminal report with a bar chart or as one JSON object.

use std::collections::BTreeMap;

use serde::Serialize;

use super::drills::DrillResult;

/// How the load balancer spread requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// No cookie: requests rotate over the healthy servers.
    RoundRobin,
    /// The load balancer set a cookie that pins a client to one server.
    Sticky,
}

/// Who answered the distribution requests.
#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub mode: Mode,
    /// Answers per server id.
    pub counts: BTreeMap<String, u32>,
    /// Requests that failed or did not answer 200.
    pub failures: u32,
    pub sent: u32,
}

/// One verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            passed: true,
            detail: detail.into(),
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            passed: false,
            detail: detail.into(),
        }
    }
}

/// Everything `infra verify` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub distribution: Distribution,
    pub checks: Vec<Check>,
    pub drills: Vec<DrillResult>,
}

/// Width of the longest bar in the chart.
const BAR_WIDTH: usize = 40;

impl Report {
    /// True when every check and drill passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed) && self.drills.iter().all(|d| d.passed)
    }

    /// The report as one JSON object (`--json`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("plain data serialises");
        v["passed"] = serde_json::Value::Bool(self.passed());
        v
    }

    /// The report for a terminal: the distribution as bars, then one line per check and drill.
    pub fn to_text(&self) -> String {
        let d = &self.distribution;
        let answered: u32 = d.counts.values().sum();
        let mode = match d.mode {
            Mode::RoundRobin => "round robin",
            Mode::Sticky => "sticky cookie",
        };
        let mut out = format!(
            "verify {}\n\nGET /server-info x{} ({mode}, {} servers answered)\n",
            self.url,
            d.sent,
            d.counts.len()
        );
        let widest = d.counts.keys().map(String::len).max().unwrap_or(0);
        let most = d.counts.values().copied().max().unwrap_or(1).max(1);
        for (server, count) in &d.counts {
            let bar = (*count as usize * BAR_WIDTH).div_ceil(most as usize);
            let share = 100.0 * f64::from(*count) / f64::from(answered.max(1));
            out.push_str(&format!(
                "  {server:<widest$}  {:<BAR_WIDTH$}  {count:>4}  {share:5.1}%\n",
                "█".repeat(bar)
            ));
        }
        if d.failures > 0 {
            out.push_str(&format!("  failed: {}\n", d.failures));
        }
        out.push('\n');
        for c in &self.checks {
            let verdict = if c.passed { "PASS" } else { "FAIL" };
            out.push_str(&format!("  {verdict}  {:<13} {}\n", c.name, c.detail));
        }
        if !self.drills.is_empty() {
            out.push('\n');
            out.push_str(&super::drills::table(&self.drills));
        }
        let failed = self.checks.iter().filter(|c| !c.passed).count()
            + self.drills.iter().filter(|d| !d.passed).count();
        let total = self.checks.len() + self.drills.len();
        out.push_str(&format!(
            "\n{} of {total} checks passed{}\n",
            total - failed,
            if failed > 0 { "; see FAIL above" } else { "" }
        ));
        out
    }
}
