//! `kill -9` at an arbitrary moment loses no acknowledged write.

use std::time::Duration;

use telex_proto::v1::client_client::ClientClient;
use telex_proto::v1::{AddUserRequest, ListUsersRequest, LoginRequest, WhoAmIRequest};
use telex_testkit::{data_dir, Telexd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let (_tmp, dir) = data_dir();
    let mut node = Telexd::start(&dir, &["--shards", "16"]);
    let mut total_acked = Vec::new();
    let mut tokens = Vec::new();

    for round in 0..3u64 {
        // Writers add users concurrently; the node is killed while they are in flight.
        let mut writers = Vec::new();
        for w in 0..8u64 {
            let url = node.admin_url();
            writers.push(tokio::spawn(async move {
                let mut admin = telex_testkit::admin_client(url).await.unwrap();
                let mut acked = Vec::new();
                for i in 0.. {
                    let jid = format!("r{round}w{w}u{i}@localhost");
                    let req = AddUserRequest { jid: jid.clone(), password: "pw".into() };
                    match admin.add_user(req).await {
                        Ok(_) => acked.push(jid),
                        Err(_) => break, // unknown outcome once the node is gone
                    }
                }
                acked
            }));
        }
        tokio::time::sleep(Duration::from_millis(400 + 300 * round)).await;
        // A login acknowledged just before the kill must also survive.
        let mut client = ClientClient::connect(node.client_url()).await.unwrap();
        if let Some(jid) = total_acked.last().cloned() {
            let r = client.login(LoginRequest { jid, password: "pw".into(), device: "d".into() }).await.unwrap();
            tokens.push(r.into_inner().token);
        }
        node.kill9();
        for w in writers {
            total_acked.extend(w.await.unwrap());
        }
        node.restart();
        assert!(!total_acked.is_empty());

        let mut admin = telex_testkit::admin_client(node.admin_url()).await.unwrap();
        let listed = admin.list_users(ListUsersRequest { domain: "localhost".into() }).await.unwrap().into_inner();
        let present: std::collections::HashSet<String> = listed.users.into_iter().map(|u| u.jid).collect();
        let lost: Vec<&String> = total_acked.iter().filter(|j| !present.contains(*j)).collect();
        assert!(lost.is_empty(), "acknowledged users lost after kill -9: {lost:?}");
        let mut client = ClientClient::connect(node.client_url()).await.unwrap();
        for t in &tokens {
            let mut req = tonic::Request::new(WhoAmIRequest {});
            req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
            client.who_am_i(req).await.expect("acknowledged login token survives kill -9");
        }
        println!("round {round}: {} acknowledged users all present after kill -9", total_acked.len());
    }
}
