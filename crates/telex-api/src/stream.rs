//! A device session served over a gRPC stream: frames from the request stream go into the
//! session as fast as it takes them, and what the session gives out becomes the response
//! stream. One poll drives both, so nothing (no task, no channel) sits between the connection
//! and the session; while the session takes no more frames, the request stream is not read.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use telex_proto::convert;
use telex_proto::v1 as pb;
use telex_session::{CutOff, ServerFrame, Session};
use telex_types::TelexError;
use tonic::Status;

use crate::status::{cutoff_status, to_status};

/// Why the stream ends.
enum Ended {
    /// The server ended the session.
    Cut(CutOff),
    /// The device sent a frame that does not make sense.
    Bad(TelexError),
}

pub(crate) struct Served<S> {
    session: Session,
    inbound: S,
    inbound_done: bool,
    ended: bool,
}

impl<S> Served<S>
where
    S: Stream<Item = Result<pb::ClientFrame, Status>> + Send + Unpin + 'static,
{
    pub(crate) fn new(session: Session, inbound: S) -> Self {
        Served { session, inbound, inbound_done: false, ended: false }
    }

    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ServerFrame, Ended>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        while !self.inbound_done && self.session.can_submit() {
            match self.inbound.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(f))) => match convert::client_frame(f) {
                    Ok(Some(f)) => self.session.submit(f),
                    Ok(None) => {}
                    Err(e) => {
                        self.ended = true;
                        return Poll::Ready(Some(Err(Ended::Bad(e))));
                    }
                },
                // The device is gone (or closed its side): finish what it sent, then end.
                Poll::Ready(Some(Err(_)) | None) => self.inbound_done = true,
                Poll::Pending => break,
            }
        }
        if self.inbound_done && !self.session.busy() {
            self.ended = true;
            return Poll::Ready(None);
        }
        match self.session.poll_next(cx) {
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Ready(Some(Err(why))) => {
                self.ended = true;
                Poll::Ready(Some(Err(Ended::Cut(why))))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The client API's `Session` response: frames, and a status when the server ends it.
pub(crate) struct ClientStream<S>(pub(crate) Served<S>);

impl<S> Stream for ClientStream<S>
where
    S: Stream<Item = Result<pb::ClientFrame, Status>> + Send + Unpin + 'static,
{
    type Item = Result<pb::ServerFrame, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let served = &mut self.get_mut().0;
        served.poll_out(cx).map(|o| {
            o.map(|o| match o {
                Ok(f) => Ok(convert::server_frame(f)),
                Err(Ended::Cut(why)) => Err(redirected(cutoff_status(&why), &why, served.session.core())),
                Err(Ended::Bad(e)) => Err(to_status(e)),
            })
        })
    }
}

/// Metadata naming the node a client of a stopping node should reconnect to (host:port).
pub const RECONNECT_TO: &str = "telex-reconnect-to";

/// A session ended because this node is stopping names another node to go to, where one is
/// known: in the message and as `RECONNECT_TO` metadata.
fn redirected(status: Status, why: &CutOff, core: &telex_session::Core) -> Status {
    let Some(to) = matches!(why, CutOff::ShuttingDown).then(|| core.next_redirect(|r| &r.client)).flatten() else {
        return status;
    };
    let Ok(value) = to.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>() else {
        return status;
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(RECONNECT_TO, value);
    let message = format!("{}: reconnect to {to}", status.message());
    Status::with_metadata(status.code(), message, metadata)
}

/// `Sessions.Attach`'s response: frames, and the typed reason when the session ends here.
pub(crate) struct AttachStream<S>(pub(crate) Served<S>);

impl<S> Stream for AttachStream<S>
where
    S: Stream<Item = Result<pb::ClientFrame, Status>> + Send + Unpin + 'static,
{
    type Item = Result<pb::AttachDown, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        use pb::attach_down::Event;
        self.get_mut().0.poll_out(cx).map(|o| {
            o.map(|o| match o {
                Ok(f) => Ok(pb::AttachDown { event: Some(Event::Frame(convert::server_frame(f))) }),
                Err(Ended::Cut(why)) => Ok(pb::AttachDown { event: Some(Event::End(convert::session_end(&why))) }),
                Err(Ended::Bad(e)) => Err(to_status(e)),
            })
        })
    }
}
