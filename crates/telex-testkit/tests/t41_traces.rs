//! Message traces over OTLP: a node configured with a collector endpoint exports, for a sampled
//! message, one trace (its id is the message's server id) holding the send, both archive
//! commits, and the hand-over to the recipient's device. The collector is a real OTLP/gRPC
//! trace service (OpenTelemetry's own protocol definitions) on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use telex_testkit::client::{login, Device};
use telex_testkit::{data_dir, Telexd};

/// (trace id, span id, parent span id, name, service name) of a span received.
type Received = (Vec<u8>, Vec<u8>, Vec<u8>, String, String);

#[derive(Default, Clone)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push((s.trace_id, s.span_id, s.parent_span_id, s.name, service.clone()));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_message_is_one_trace_from_send_to_delivery() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let (tmp, dir) = data_dir();
    let config = tmp.path().join("traces.toml");
    std::fs::write(&config, format!("[traces]\notlp_endpoint = \"{endpoint}\"\nsample_ratio = 1.0\n")).unwrap();
    let mut node = Telexd::start(&dir, &["--shards", "8", "--config", config.to_str().unwrap()]);
    for u in ["alice", "bob"] {
        node.cli(&["user", "add", &format!("{u}@localhost"), "--password", "pw"]).success();
    }
    let url = node.client_url();
    let mut bob = Device::open(&url, &login(&url, "bob@localhost", "pw", "phone").await).await.unwrap();
    let mut alice = Device::open(&url, &login(&url, "alice@localhost", "pw", "laptop").await).await.unwrap();
    alice.send("bob@localhost", "traced-1", "hello").await;
    let sent = alice.result("traced-1").await;
    assert!(sent.error.is_empty(), "{sent:?}");
    let got = bob.message(Duration::from_secs(5)).await.expect("bob receives the message");
    assert_eq!(got.server_id, sent.server_id);

    // Spans are batched; a clean shutdown flushes them.
    assert!(node.terminate(Duration::from_secs(40)), "telexd did not stop cleanly");
    let trace = unhex(&sent.server_id);
    let spans: Vec<_> = collector.spans.lock().unwrap().iter().filter(|s| s.0 == trace).cloned().collect();
    let names: Vec<&str> = spans.iter().map(|s| s.3.as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "message.send").count(), 1, "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "archive.commit").count(), 2, "{names:?}");
    assert!(names.contains(&"message.deliver"), "{names:?}");
    // The commits are children of the send; the send and the delivery hang off the message's
    // own root id (the server id's low half), so nodes need not pass a context between them.
    let send = spans.iter().find(|s| s.3 == "message.send").unwrap();
    assert_eq!(send.2, trace[8..].to_vec(), "the send's parent is the message's root id");
    for c in spans.iter().filter(|s| s.3 == "archive.commit") {
        assert_eq!(c.2, send.1, "an archive commit outside the send span");
    }
    assert!(spans.iter().all(|s| s.4.contains("telexd")), "service.name: {spans:?}");
}
