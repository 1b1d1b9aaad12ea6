//! An XMPP endpoint that only acknowledges: it lets any PLAIN login in, binds, enables stream
//! management and answers `<r/>` with the count of stanzas received, delivering nothing. Runs
//! in the tool's own process, so a run against it shows the tool's ceiling.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener) {
    while let Ok((socket, _)) = listener.accept().await {
        tokio::spawn(connection(socket));
    }
}

async fn connection(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 16384];
    let mut scan = String::new();
    let mut opened = 0;
    let mut counting = false;
    let mut handled: u64 = 0;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        scan.push_str(&String::from_utf8_lossy(&buf[..n]));
        let mut reply = String::new();
        while let Some(at) = scan.find("<stream:stream") {
            opened += 1;
            reply.push_str("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='sink' version='1.0'>");
            reply.push_str(if opened == 1 {
                "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
            } else {
                "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>"
            });
            scan.drain(..at + 14);
        }
        if let Some(at) = scan.find("</auth>") {
            reply.push_str("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
            scan.drain(..at + 7);
        }
        if let Some(at) = scan.find("</bind></iq>") {
            reply.push_str("<iq type='result' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>sink@sink/d</jid></bind></iq>");
            scan.drain(..at + 12);
        }
        if let Some(at) = scan.find("<enable xmlns='urn:xmpp:sm:3'/>") {
            reply.push_str("<enabled xmlns='urn:xmpp:sm:3'/>");
            counting = true;
            scan.drain(..at + 31);
        }
        if counting {
            handled += (scan.matches("<message ").count() + scan.matches("<presence").count()) as u64;
            if scan.contains("<r xmlns='urn:xmpp:sm:3'/>") {
                reply.push_str(&format!("<a xmlns='urn:xmpp:sm:3' h='{handled}'/>"));
            }
            // A tail shorter than any counted tag, in case one was cut off.
            let keep = (scan.len().saturating_sub(8)..=scan.len()).find(|&i| scan.is_char_boundary(i)).unwrap_or(0);
            scan.drain(..keep);
        }
        if !reply.is_empty() && s.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
