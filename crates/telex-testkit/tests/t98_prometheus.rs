//! The compose cluster (`cluster/compose.yaml`, three containers of the image) scraped by a real
//! Prometheus from Debian's package, with the chart's alert rules loaded: every node is up, the
//! metrics the dashboard and the alerts use are there, and the rules evaluate.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use telex_testkit::http_get;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stderr(Stdio::piped()).output().expect("run command");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The compose project, taken down with its volumes when the test ends.
struct Compose {
    project: String,
    ip: String,
}

impl Compose {
    fn command(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.args(["--project-name", &self.project, "--file"])
            .arg(repo().join("cluster/compose.yaml"))
            .env("TELEX_IMAGE", "telex:compose-test")
            .env("TELEX_PUBLISH_IP", &self.ip);
        c
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.command().args(["down", "--volumes", "--timeout", "5"]).output();
    }
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn query(prom: SocketAddr, q: &str) -> Vec<Value> {
    let path = format!("/api/v1/query?query={}", q.replace(' ', "%20").replace('"', "%22"));
    let Some((200, body)) = http_get(prom, &path) else { return Vec::new() };
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[test]
fn prometheus_scrapes_the_compose_cluster_and_loads_the_alerts() {
    // promtool and prometheus come with Debian's package (installed on first use).
    run(&mut Command::new(repo().join("scripts/helm-tools.sh")));
    println!("{}", run(Command::new(repo().join("scripts/image.sh")).arg("telex:compose-test")));
    // A loopback address of its own, so the published ports collide with nothing else.
    let ip = format!("127.0.0.{}", 100 + std::process::id() % 150);
    let compose = Compose { project: format!("telexprom{}", std::process::id()), ip: ip.clone() };
    run(compose.command().args(["up", "--detach"]));

    let http = |port: u16| -> SocketAddr { format!("{ip}:{port}").parse().unwrap() };
    let targets = [http(7480), http(17480), http(27480)];
    let started = Instant::now();
    for t in targets {
        while !matches!(http_get(t, "/readyz"), Some((200, _))) {
            assert!(started.elapsed() < Duration::from_secs(120), "{t} not ready: {}", {
                let logs = compose.command().args(["logs", "--tail", "30"]).output().unwrap();
                String::from_utf8_lossy(&logs.stdout).to_string()
            });
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    println!("compose cluster ready after {:?}", started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let rules = repo().join("helm/telex/files/alerts.yaml");
    let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\n\
         scrape_configs:\n  - job_name: telex\n    static_configs:\n      - targets: [{list}]\n",
        rules.display()
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prom: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _prometheus = Prometheus(child);

    // Every node scraped and up, and the groups' leaders counted across them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut up, mut leading) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        up = query(prom, "up{job=\"telex\"} == 1");
        leading = query(prom, "sum(telex_raft_groups_leading)");
        if up.len() == 3 && !leading.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(up.len(), 3, "not every node is up in Prometheus: {up:?}");
    let led: f64 = leading[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert_eq!(led, 65.0, "each of the 65 groups should have exactly one leader: {leading:?}");
    for metric in
        ["telex_store_wal_sync_seconds_bucket", "telex_store_disk_free_bytes", "telex_raft_replica_lag_entries"]
    {
        assert_eq!(query(prom, &format!("count({metric}) > 0")).len(), 1, "{metric} missing from the scrape");
    }

    // The alert rules loaded and evaluate; with a healthy cluster none fires.
    let (status, body) = http_get(prom, "/api/v1/rules").expect("rules API");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let rules: Vec<&Value> =
        v["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(rules.len(), 6, "{body}");
    for r in &rules {
        assert_eq!(r["health"], "ok", "rule {} does not evaluate: {r}", r["name"]);
        assert_ne!(r["state"], "firing", "rule {} fires on a healthy cluster: {r}", r["name"]);
    }
    println!("prometheus: 3 targets up, 65 groups led, {} alert rules healthy", rules.len());
}
