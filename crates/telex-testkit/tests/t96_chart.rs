//! The Helm chart, checked without a cluster by Helm's own SDK: strict lint, the values schema
//! (bad values refused), renders with the defaults and with every feature on validated against
//! the Kubernetes OpenAPI schemas and compared with golden files (`helm/tests/chart.py`); and
//! the alert rules the chart ships, checked by promtool.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The virtualenv python with helm-python-sdk (installed on first use, with promtool).
fn python() -> String {
    let out = Command::new(repo().join("scripts/helm-tools.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run helm-tools.sh");
    assert!(out.status.success(), "installing the chart tools failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_chart_lints_renders_and_validates() {
    let out = Command::new(python()).arg(repo().join("helm/tests/chart.py")).output().expect("run chart.py");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("chart ok"), "chart check failed:\n{stdout}\n{stderr}");
    println!("{stdout}");
}

#[test]
fn the_alert_rules_pass_promtool() {
    python(); // installs promtool when missing
    let rules = repo().join("helm/telex/files/alerts.yaml");
    let out = Command::new("promtool").args(["check", "rules"]).arg(&rules).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("SUCCESS"), "promtool refused the rules:\n{text}");
    // Every metric an alert uses is one the node exports (a renamed metric would silence it).
    let alerts = std::fs::read_to_string(&rules).unwrap();
    let sources = ["crates/telex-node/src/node.rs", "crates/telex-store/src/syncer.rs", "crates/telex-actors/src"];
    let mut code = String::new();
    for s in sources {
        let p = repo().join(s);
        let files =
            if p.is_dir() { std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect() } else { vec![p] };
        for f in files {
            code.push_str(&std::fs::read_to_string(f).unwrap_or_default());
        }
    }
    for metric in alerts.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("telex_")) {
        let base = metric.trim_end_matches("_bucket");
        assert!(code.contains(&format!("\"{base}\"")), "alert rule uses {metric}, which no node code exports");
    }
}
