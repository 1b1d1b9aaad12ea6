//! The Helm chart's StatefulSet as Docker containers: render the chart (Helm's SDK, through
//! `helm/tests/chart.py`), read the pod template (image, args, env with the downward-API values
//! substituted as the kubelet would, ports, readiness probe, grace period, read-only root,
//! user) and run one container per pod on a Docker network where each has its pod's DNS name.
//! Used by `t97_containers` and the `rolling-bench` example.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http_get;

pub const NAMESPACE: &str = "chat";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a command; its stdout, or a panic with its stderr.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.stderr(Stdio::piped()).output().expect("run command");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

/// Builds the image (`scripts/image.sh`) under `tag`; the script's summary line.
pub fn build_image(tag: &str) -> String {
    run(Command::new(repo().join("scripts/image.sh")).arg(tag))
}

/// The chart rendered with `values` over its defaults: every manifest, as JSON.
pub fn render(values: &Value) -> Vec<Value> {
    let tools = run(&mut Command::new(repo().join("scripts/helm-tools.sh")));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, "{}\n").unwrap();
    let out = run(Command::new(tools)
        .arg(repo().join("helm/tests/chart.py"))
        .arg("render")
        .arg(&file)
        .args(["--set-json", &values.to_string()]));
    serde_json::from_str(&out).expect("rendered manifests as JSON")
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// `$(VAR)` references in an arg, expanded from the container's env as the kubelet does.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The value under `key` of the rendered Secret `name` (`stringData`, or base64 `data`).
fn secret_value(docs: &[Value], name: &Value, key: &Value) -> String {
    let key = key.as_str().expect("secretKeyRef key");
    let secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == *name)
        .unwrap_or_else(|| panic!("the harness needs the chart to render Secret {name}"));
    if let Some(v) = secret["stringData"][key].as_str() {
        return v.to_string();
    }
    let encoded = secret["data"][key].as_str().expect("secret key");
    use base64::Engine;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64")).expect("utf-8")
}

/// One pod of the StatefulSet as a container.
pub struct Pod {
    pub name: String,
    pub container: String,
    run_args: Vec<String>,
    /// The client gRPC port, published on loopback.
    pub client: SocketAddr,
    /// The HTTP port (probes, metrics), published on loopback.
    pub http: SocketAddr,
    /// The admin gRPC port, published on loopback.
    pub admin: SocketAddr,
}

/// The StatefulSet's pods as containers; everything is removed when dropped.
pub struct Deployment {
    pub pods: Vec<Pod>,
    pub volumes: Vec<String>,
    network: String,
    _config_dir: tempfile::TempDir,
    ready_path: String,
    /// The pod's terminationGracePeriodSeconds.
    pub grace: u64,
    /// The StatefulSet's podManagementPolicy is Parallel (else OrderedReady).
    parallel: bool,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for p in &self.pods {
            let _ = Command::new("docker").args(["rm", "-f", &p.container]).output();
        }
        for v in &self.volumes {
            let _ = Command::new("docker").args(["volume", "rm", "-f", v]).output();
        }
        let _ = Command::new("docker").args(["network", "rm", &self.network]).output();
    }
}

impl Deployment {
    /// Reads the rendered StatefulSet's pod template and prepares its pods (not started).
    pub fn from_chart(docs: &[Value]) -> Deployment {
        let sts = find(docs, "StatefulSet");
        let config = find(docs, "ConfigMap")["data"]["telex.toml"].as_str().expect("telex.toml in the ConfigMap");
        let replicas = sts["spec"]["replicas"].as_u64().unwrap() as usize;
        let spec = &sts["spec"]["template"]["spec"];
        let c = &spec["containers"][0];
        let service = sts["spec"]["serviceName"].as_str().unwrap();
        let sts_name = sts["metadata"]["name"].as_str().unwrap();
        let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
        let parallel = sts["spec"]["podManagementPolicy"] == "Parallel";
        let ports: BTreeMap<String, u64> = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_string(), p["containerPort"].as_u64().unwrap()))
            .collect();
        let probe = &c["readinessProbe"]["httpGet"];
        let ready_path = probe["path"].as_str().unwrap().to_string();
        let probe_port = ports[probe["port"].as_str().unwrap()];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        let user = format!("{}:{}", spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]);

        let tag = std::process::id();
        let network = format!("telex-ct-{tag}");
        docker(&["network", "create", &network]);
        let config_dir = tempfile::tempdir().unwrap();
        let config_file = config_dir.path().join("telex.toml");
        std::fs::write(&config_file, config).unwrap();
        // The container user must read it.
        run(Command::new("chmod").args(["-R", "a+rX"]).arg(config_dir.path()));

        let mut pods = Vec::new();
        let mut volumes = Vec::new();
        for i in 0..replicas {
            let name = format!("{sts_name}-{i}");
            let container = format!("telex-ct-{tag}-{i}");
            let volume = format!("telex-ct-{tag}-data-{i}");
            let dns = format!("{name}.{service}.{NAMESPACE}.svc.cluster.local");
            let mut env = BTreeMap::new();
            let mut run_args: Vec<String> = vec!["--name".into(), container.clone(), "--hostname".into(), name.clone()];
            for e in c["env"].as_array().unwrap() {
                let key = e["name"].as_str().unwrap().to_string();
                let secret = &e["valueFrom"]["secretKeyRef"];
                let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                    // A Secret the chart renders, as the kubelet would read it.
                    None if secret.is_object() => secret_value(docs, &secret["name"], &secret["key"]),
                    Some("metadata.name") => name.clone(),
                    Some("metadata.namespace") => NAMESPACE.to_string(),
                    // Three pods in three zones, as a regional cluster schedules them.
                    Some("metadata.labels['topology.kubernetes.io/zone']") => format!("zone-{}", i % 3),
                    Some("spec.nodeName") => format!("worker-{i}"),
                    Some(other) => panic!("the harness does not know the downward-API field {other}"),
                    None => e["value"].as_str().unwrap().to_string(),
                };
                run_args.extend(["--env".into(), format!("{key}={value}")]);
                env.insert(key, value);
            }
            let (client, http, admin) = (free_port(), free_port(), free_port());
            let (client_port, admin_port) = (ports["grpc"], ports["admin"]);
            run_args.extend([
                "--network".into(),
                network.clone(),
                "--network-alias".into(),
                dns,
                "--read-only".into(),
                "--user".into(),
                user.clone(),
                "--stop-timeout".into(),
                grace.to_string(),
                "--volume".into(),
                format!("{volume}:/data"),
                "--volume".into(),
                format!("{}:/etc/telex/telex.toml:ro", config_file.display()),
                "--publish".into(),
                format!("127.0.0.1:{client}:{client_port}"),
                "--publish".into(),
                format!("127.0.0.1:{http}:{probe_port}"),
                "--publish".into(),
                format!("127.0.0.1:{admin}:{admin_port}"),
                c["image"].as_str().unwrap().to_string(),
            ]);
            run_args.extend(c["args"].as_array().unwrap().iter().map(|a| expand(a.as_str().unwrap(), &env)));
            pods.push(Pod {
                name,
                container,
                run_args,
                client: SocketAddr::from(([127, 0, 0, 1], client)),
                http: SocketAddr::from(([127, 0, 0, 1], http)),
                admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            });
            volumes.push(volume);
        }
        Deployment { pods, network, volumes, _config_dir: config_dir, ready_path, grace, parallel }
    }

    /// Creates and starts pod `i`'s container.
    pub fn create(&self, i: usize) {
        let mut args = vec!["run", "--detach"];
        args.extend(self.pods[i].run_args.iter().map(String::as_str));
        docker(&args);
    }

    /// Starts every pod as the StatefulSet's podManagementPolicy says: all at once
    /// (Parallel), or each once the one before is ready (OrderedReady); returns once all are
    /// ready, with how long each took from the start.
    pub fn start(&self, within: Duration) -> Vec<Duration> {
        let started = Instant::now();
        let mut took = Vec::new();
        if self.parallel {
            (0..self.pods.len()).for_each(|i| self.create(i));
            for i in 0..self.pods.len() {
                self.wait_ready(i, within);
                took.push(started.elapsed());
            }
        } else {
            for i in 0..self.pods.len() {
                self.create(i);
                self.wait_ready(i, within);
                took.push(started.elapsed());
            }
        }
        took
    }

    /// Polls the chart's readiness probe until it answers 200; how long that took.
    pub fn wait_ready(&self, i: usize, within: Duration) -> Duration {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some((200, _)) = http_get(self.pods[i].http, &self.ready_path) {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{} not ready within {within:?}:\n{}", self.pods[i].name, self.logs(i));
    }

    /// The container's log.
    pub fn logs(&self, i: usize) -> String {
        let logs = Command::new("docker").args(["logs", &self.pods[i].container]).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr))
    }

    /// Runs the `telex` CLI inside pod `i`.
    pub fn exec(&self, i: usize, args: &[&str]) -> String {
        let mut all = vec!["exec", self.pods[i].container.as_str(), "/usr/local/bin/telex"];
        all.extend(args);
        docker(&all)
    }

    /// Stops pod `i` as the kubelet would (SIGTERM, SIGKILL after the grace period) and starts
    /// it again on its volume; how long the stop took, and until it was ready again.
    pub fn restart(&self, i: usize) -> (Duration, Duration) {
        let started = Instant::now();
        docker(&["stop", "--time", &self.grace.to_string(), &self.pods[i].container]);
        let stopped = started.elapsed();
        docker(&["start", &self.pods[i].container]);
        self.wait_ready(i, Duration::from_secs(90));
        (stopped, started.elapsed())
    }

    /// Every pod's client API URL.
    pub fn urls(&self) -> Vec<String> {
        self.pods.iter().map(|p| format!("http://{}", p.client)).collect()
    }
}
