//! Node-to-node mTLS: the TLS settings, and who a peer is.
//!
//! Every node's certificate is issued by the cluster's CA and carries two DNS names: the shared
//! name `telex-node` (what a connecting node verifies: "a node of this cluster") and
//! `node-<ID>` (the node's identity). A node accepts node-to-node calls only from members of the
//! cluster, or from anyone with a valid certificate while it has not joined yet; a join request
//! is accepted only for the identity in the caller's certificate.

use std::sync::Arc;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::Status;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::types::NodeId;
use crate::Groups;

/// The DNS name every node certificate carries, verified by connecting nodes.
pub const CLUSTER_NAME: &str = "telex-node";

/// PEM contents of the node's certificate (chain), its key, and the cluster CA.
#[derive(Clone, Debug)]
pub struct NodeTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub ca_pem: Vec<u8>,
}

impl NodeTls {
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }

    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(CLUSTER_NAME)
    }
}

/// The node id named by a DER certificate's `node-<ID>` DNS name.
pub fn node_id_of(der: &[u8]) -> Result<NodeId, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("unreadable peer certificate: {e}"))?;
    let san = cert.subject_alternative_name().map_err(|e| format!("bad subjectAltName: {e}"))?;
    let names = san.map(|s| s.value.general_names.clone()).unwrap_or_default();
    names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => d.strip_prefix("node-")?.parse::<NodeId>().ok(),
            _ => None,
        })
        .find(|id| *id > 0)
        .ok_or_else(|| "the peer certificate names no node (no node-<ID> DNS name)".to_string())
}

impl Groups {
    /// Checks a node-to-node call. Without TLS every caller is accepted (loopback dev).
    /// `joining`: the node id a join request claims, which must be the caller's own.
    pub fn admit(
        &self,
        certs: Option<Arc<Vec<tonic::transport::CertificateDer<'static>>>>,
        joining: Option<NodeId>,
    ) -> Result<(), Status> {
        if self.config.tls.is_none() {
            return Ok(());
        }
        let certs = certs.ok_or_else(|| Status::unauthenticated("node-to-node calls need a client certificate"))?;
        let leaf = certs.first().ok_or_else(|| Status::unauthenticated("no client certificate presented"))?;
        let peer = node_id_of(leaf).map_err(Status::unauthenticated)?;
        if let Some(claimed) = joining {
            if claimed != peer {
                return Err(Status::permission_denied(format!(
                    "a node with the certificate of node {peer} cannot join as node {claimed}"
                )));
            }
            return Ok(());
        }
        let members = self.members(telex_types::META_GROUP);
        if members.is_empty() || members.iter().any(|(id, _)| *id == peer) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!("node {peer} is not a member of this cluster")))
        }
    }
}
