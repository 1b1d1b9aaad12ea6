//! The Helm chart's StatefulSet, run for real: the chart is rendered (Helm's SDK), and its pod
//! spec (image, args, env with the downward-API values substituted as the kubelet would, ports,
//! readiness probe, grace period, read-only root, user) drives three containers of the image
//! `make image` builds, on a Docker network where each has its pod's DNS name. The test waits on
//! the chart's own readiness probe, chats through the pods' client ports, `docker kill`s a pod,
//! then restarts every pod in StatefulSet order (highest ordinal first) with the chart's grace
//! period, and checks the history: nothing acknowledged is lost.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use telex_testkit::cluster::{archive_at, steady_load};
use telex_testkit::containers::{build_image, docker, render, Deployment, NAMESPACE};
use telex_testkit::history::check;

const PODS: usize = 3;

#[test]
fn the_rendered_statefulset_survives_a_kill_and_a_rolling_restart() {
    println!("{}", build_image("telex:container-test"));
    let values = serde_json::json!({
        "image": { "repository": "telex", "tag": "container-test", "pullPolicy": "Never" },
        "replicas": PODS,
        "bootstrapTenant": "localhost",
        "terminationGracePeriodSeconds": 20,
        "raft": { "shards": 8, "replicas": 3 },
        "config": { "limits": { "sends_per_second": 1000, "send_burst": 1000 } },
        "admin": { "enabled": true, "token": telex_testkit::ADMIN_TOKEN },
    });
    let d = Deployment::from_chart(&render(&values));

    // As the chart says (Parallel): all pods at once; pod 0 starts the cluster.
    for (i, took) in d.start(Duration::from_secs(90)).iter().enumerate() {
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
            let (stopped, total) = d.restart(i);
            restarts.push((d.pods[i].name.clone(), stopped, total));
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
        let logs = d.logs(0);
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
