//! The Helm chart's StatefulSet, run for real: the chart is rendered (Helm's SDK), and its pod
//! spec (image, args, env with the downward-API values substituted as the kubelet would, ports,
//! readiness probe, grace period, read-only root, user) drives three containers of the image
//! `make image` builds, on a Docker network where each has its pod's DNS name. The test waits on
//! the chart's own readiness probe, chats through the pods' client ports, `docker kill`s a pod,
//! then restarts every pod in StatefulSet order (highest ordinal first) with the chart's grace
//! period, and checks the history: nothing acknowledged is lost.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use telex_testkit::cluster::{archive_at, steady_load};
use telex_testkit::history::check;
use telex_testkit::http_get;

const IMAGE: &str = "telex:container-test";
const NAMESPACE: &str = "chat";
const PODS: usize = 3;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stderr(Stdio::piped()).output().expect("run command");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

/// The chart rendered with the test's values: every manifest, as JSON.
fn render() -> Vec<Value> {
    let tools = run(&mut Command::new(repo().join("scripts/helm-tools.sh")));
    let values = serde_json::json!({
        "image": { "repository": "telex", "tag": "container-test", "pullPolicy": "Never" },
        "replicas": PODS,
        "bootstrapTenant": "localhost",
        "terminationGracePeriodSeconds": 20,
        "raft": { "shards": 8, "replicas": 3 },
        "config": { "limits": { "sends_per_second": 1000, "send_burst": 1000 } },
    });
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

/// One pod of the StatefulSet as a container.
struct Pod {
    name: String,
    container: String,
    run_args: Vec<String>,
    client: SocketAddr,
    http: SocketAddr,
}

struct Deployment {
    pods: Vec<Pod>,
    network: String,
    volumes: Vec<String>,
    config_dir: tempfile::TempDir,
    ready_path: String,
    grace: u64,
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
        let _ = &self.config_dir;
    }
}

impl Deployment {
    /// Reads the StatefulSet's pod template and builds each pod's `docker run` arguments.
    fn from_chart(docs: &[Value]) -> Deployment {
        let sts = find(docs, "StatefulSet");
        let config = find(docs, "ConfigMap")["data"]["telex.toml"].as_str().expect("telex.toml in the ConfigMap");
        let spec = &sts["spec"]["template"]["spec"];
        let c = &spec["containers"][0];
        let service = sts["spec"]["serviceName"].as_str().unwrap();
        let sts_name = sts["metadata"]["name"].as_str().unwrap();
        let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
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
        for i in 0..PODS {
            let name = format!("{sts_name}-{i}");
            let container = format!("telex-ct-{tag}-{i}");
            let volume = format!("telex-ct-{tag}-data-{i}");
            let dns = format!("{name}.{service}.{NAMESPACE}.svc.cluster.local");
            let mut env = BTreeMap::new();
            let mut run_args: Vec<String> = vec!["--name".into(), container.clone(), "--hostname".into(), name.clone()];
            for e in c["env"].as_array().unwrap() {
                let key = e["name"].as_str().unwrap().to_string();
                let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                    Some("metadata.name") => name.clone(),
                    Some("metadata.namespace") => NAMESPACE.to_string(),
                    Some(other) => panic!("the test does not know the downward-API field {other}"),
                    None => e["value"].as_str().unwrap().to_string(),
                };
                run_args.extend(["--env".into(), format!("{key}={value}")]);
                env.insert(key, value);
            }
            let (client, http) = (free_port(), free_port());
            let client_port = ports["grpc"];
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
                c["image"].as_str().unwrap().to_string(),
            ]);
            run_args.extend(c["args"].as_array().unwrap().iter().map(|a| expand(a.as_str().unwrap(), &env)));
            pods.push(Pod {
                name,
                container,
                run_args,
                client: SocketAddr::from(([127, 0, 0, 1], client)),
                http: SocketAddr::from(([127, 0, 0, 1], http)),
            });
            volumes.push(volume);
        }
        Deployment { pods, network, volumes, config_dir, ready_path, grace }
    }

    fn create(&self, i: usize) {
        let mut args = vec!["run", "--detach"];
        args.extend(self.pods[i].run_args.iter().map(String::as_str));
        docker(&args);
    }

    /// Polls the chart's readiness probe until it answers 200.
    fn wait_ready(&self, i: usize, within: Duration) -> Duration {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some((200, _)) = http_get(self.pods[i].http, &self.ready_path) {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let logs = Command::new("docker").args(["logs", "--tail", "40", &self.pods[i].container]).output().unwrap();
        panic!(
            "{} not ready within {within:?}:\n{}{}",
            self.pods[i].name,
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
    }

    fn exec(&self, i: usize, args: &[&str]) -> String {
        let mut all = vec!["exec", self.pods[i].container.as_str(), "/usr/local/bin/telex"];
        all.extend(args);
        docker(&all)
    }

    fn urls(&self) -> Vec<String> {
        self.pods.iter().map(|p| format!("http://{}", p.client)).collect()
    }
}

#[test]
fn the_rendered_statefulset_survives_a_kill_and_a_rolling_restart() {
    let built = run(Command::new(repo().join("scripts/image.sh")).arg(IMAGE));
    println!("{built}");
    let d = Deployment::from_chart(&render());

    // OrderedReady: each pod starts once the one before it is ready.
    for i in 0..PODS {
        d.create(i);
        let took = d.wait_ready(i, Duration::from_secs(90));
        println!("{} ready after {took:?}", d.pods[i].name);
    }
    // Every pod joined under its ordinal's id, advertising its pod DNS name.
    let status: Value = serde_json::from_str(&d.exec(0, &["--json", "cluster", "status"])).unwrap();
    let nodes = status["nodes"].as_array().unwrap();
    let ids: Vec<u64> = nodes.iter().map(|n| n["node_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3], "{status}");
    for n in nodes {
        let addr = n["addr"].as_str().unwrap();
        assert!(addr.ends_with(&format!(".{NAMESPACE}.svc.cluster.local:7401")), "advertised {addr}");
    }
    for u in ["alice@localhost", "bob@localhost"] {
        d.exec(0, &["user", "add", u, "--password", "pw"]);
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let token = telex_testkit::client::login(&d.urls()[0], "alice@localhost", "pw", "load").await;
        let (stop, load) = steady_load(d.urls(), token);
        tokio::time::sleep(Duration::from_secs(3)).await;

        // A pod killed outright, then started again on its volume.
        docker(&["kill", &d.pods[1].container]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        docker(&["start", &d.pods[1].container]);
        let back = d.wait_ready(1, Duration::from_secs(90));
        println!("{} killed, started 3 s later, ready {back:?} after that", d.pods[1].name);

        // Rolling restart in StatefulSet order: highest ordinal first, each ready before the next.
        let mut restarts = Vec::new();
        for i in (0..PODS).rev() {
            let started = Instant::now();
            docker(&["stop", "--time", &d.grace.to_string(), &d.pods[i].container]);
            let stopped = started.elapsed();
            docker(&["start", &d.pods[i].container]);
            d.wait_ready(i, Duration::from_secs(90));
            restarts.push((d.pods[i].name.clone(), stopped, started.elapsed()));
        }
        for (name, stopped, total) in &restarts {
            println!("rolling restart: {name} stopped in {stopped:?}, ready again after {total:?}");
            assert!(*stopped < Duration::from_secs(d.grace), "{name} needed the grace period's SIGKILL");
        }

        // Pod 0 replaced with an empty volume: it must join the running cluster as a new
        // replica (it is listed first in --join, yet a cluster answers), not start another.
        let replaced = Instant::now();
        docker(&["rm", "--force", &d.pods[0].container]);
        docker(&["volume", "rm", &d.volumes[0]]);
        d.create(0);
        d.wait_ready(0, Duration::from_secs(90));
        println!("{} replaced with an empty volume, ready after {:?}", d.pods[0].name, replaced.elapsed());
        let logs = Command::new("docker").args(["logs", &d.pods[0].container]).output().unwrap();
        let logs = format!("{}{}", String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
        assert!(logs.contains("joined the cluster") && !logs.contains("starts one"), "pod 0 did not rejoin:\n{logs}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.send(true).unwrap();
        let events = load.await.unwrap();

        let mut archives = BTreeMap::new();
        archives.insert("bob@localhost".to_string(), archive_at(&d.urls()[0], "bob@localhost").await);
        let figures = check(&events, &archives);
        println!("history: {figures}");
        // The replaced pod holds the same state as the others (and so the same cluster).
        let (mut verified, mut identical) = (String::new(), false);
        for _ in 0..30 {
            let out = Command::new("docker")
                .args(["exec", &d.pods[1].container, "/usr/local/bin/telex", "cluster", "verify"])
                .output()
                .unwrap();
            verified = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            if out.status.success() {
                identical = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("cluster verify: {}", verified.lines().last().unwrap_or(""));
        let status: Value = serde_json::from_str(&d.exec(0, &["--json", "cluster", "status"])).unwrap();
        let ids: Vec<u64> =
            status["nodes"].as_array().unwrap().iter().map(|n| n["node_id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [1, 2, 3], "the replaced pod sees another cluster: {status}");
        assert!(figures.acked > 20, "too little got through: {figures}");
        assert!(figures.promise_kept(), "delivery promise broken: {figures}");
        assert!(identical, "replicas differ after the replacement:\n{verified}");
    });
}
