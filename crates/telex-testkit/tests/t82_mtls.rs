//! mTLS between nodes: a cluster whose node-to-node traffic is TLS with client certificates
//! works, and a caller that is not a member, has no certificate, has one from another CA, or
//! claims another node's identity is refused.

use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use telex_proto::v1::node_client::NodeClient;
use telex_proto::v1::{DigestRequest, JoinRequest};
use telex_testkit::client::{login, Device};
use telex_testkit::cluster::wait_for_replicas;
use telex_testkit::{data_dir, Telexd};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca { cert: params.self_signed(&key).unwrap(), key }
    }

    /// A node certificate for node `id`: (cert PEM, key PEM).
    fn node(&self, id: u64) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["telex-node".to_string(), format!("node-{id}")]).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes node `id`'s certificate, key and the CA into `dir` and a config naming them.
fn tls_config(dir: &Path, ca: &Ca, id: u64) -> String {
    let (cert, key) = ca.node(id);
    std::fs::create_dir_all(dir).unwrap();
    for (name, pem) in [("cert.pem", cert), ("key.pem", key), ("ca.pem", ca.cert.pem())] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let config = format!(
        "[node_tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\n[raft]\nshards = 2\n",
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem")
    );
    let path = dir.join("telex.toml");
    std::fs::write(&path, config).unwrap();
    path.to_str().unwrap().to_string()
}

/// A node-to-node client of `node` presenting `identity` (if any), trusting `ca`.
async fn node_client(
    node: &Telexd,
    ca: &Ca,
    identity: Option<(String, String)>,
) -> Result<NodeClient<tonic::transport::Channel>, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.cert.pem())).domain_name("telex-node");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Endpoint::from_shared(format!("https://{}", node.addrs.node)).unwrap().tls_config(tls).unwrap();
    let channel = endpoint.timeout(Duration::from_secs(5)).connect().await.map_err(|e| format!("{e:?}"))?;
    Ok(NodeClient::new(channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_over_mtls_and_refuse_strangers() {
    let ca = Ca::new();
    let mut dirs = Vec::new();
    let mut nodes: Vec<Telexd> = Vec::new();
    for id in 1..=3 {
        let (tmp, dir) = data_dir();
        let config = tls_config(&tmp.path().join("tls"), &ca, id);
        let seed = nodes.first().map(|n| n.addrs.node);
        nodes.push(Telexd::start_member(&dir, id, seed, &["--config", config.as_str()]));
        dirs.push(tmp);
    }
    wait_for_replicas(&nodes[0], 3);
    for user in ["alice@localhost", "bob@localhost"] {
        nodes[0].cli(&["user", "add", user, "--password", "pw"]).success();
    }

    // Chat across nodes: writes are forwarded to the leader and replicated over mTLS.
    let (a_url, b_url) = (nodes[1].client_url(), nodes[2].client_url());
    let mut bob = Device::open(&b_url, &login(&b_url, "bob@localhost", "pw", "phone").await).await.unwrap();
    let mut alice = Device::open(&a_url, &login(&a_url, "alice@localhost", "pw", "laptop").await).await.unwrap();
    alice.send("bob@localhost", "m1", "over mtls").await;
    assert!(alice.result("m1").await.error.is_empty());
    assert_eq!(bob.message(Duration::from_secs(5)).await.expect("delivered").body, "over mtls");
    nodes[0].cli(&["cluster", "verify"]).success();

    let n1 = &nodes[0];
    // A certificate from the cluster CA, but for a node that is not a member.
    let mut stranger = node_client(n1, &ca, Some(ca.node(9))).await.expect("TLS with a valid certificate");
    let refused = stranger.digest(DigestRequest { groups: vec![] }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("node 9 is not a member"), "{refused:?}");
    // It may ask to join as itself, not as another node.
    let spoof =
        stranger.join(JoinRequest { node_id: 2, addr: "127.0.0.1:1".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(spoof.code(), tonic::Code::PermissionDenied, "{spoof:?}");
    assert!(spoof.message().contains("cannot join as node 2"), "{spoof:?}");

    // No client certificate, or one from another CA: the handshake or the call fails.
    let no_cert = match node_client(n1, &ca, None).await {
        Ok(mut c) => c.digest(DigestRequest { groups: vec![] }).await.is_err(),
        Err(_) => true,
    };
    assert!(no_cert, "a caller without a certificate was served");
    let other_ca = Ca::new();
    let foreign = match node_client(n1, &ca, Some(other_ca.node(2))).await {
        Ok(mut c) => c.digest(DigestRequest { groups: vec![] }).await.is_err(),
        Err(_) => true,
    };
    assert!(foreign, "a certificate from another CA was accepted");
    // Plain HTTP/2 to the TLS listener gets nowhere.
    let plain = Endpoint::from_shared(format!("http://{}", n1.addrs.node)).unwrap().timeout(Duration::from_secs(5));
    let plain_ok = match plain.connect().await {
        Ok(ch) => NodeClient::new(ch).digest(DigestRequest { groups: vec![] }).await.is_ok(),
        Err(_) => false,
    };
    assert!(!plain_ok, "plain text was served on the TLS listener");
    // The cluster is still healthy.
    let status = n1.cli(&["cluster", "status"]).success();
    assert!(status.contains("0 groups without a leader"), "{status}");
}
