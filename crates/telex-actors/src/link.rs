//! A device session's end of its attachment to the user's actor on this node. The connection
//! polls it directly: no task and no channel of its own beyond the actor's queue towards the
//! device. Acknowledgements and presence are handed to the actor's mailbox from inside that
//! poll; while the mailbox is full only the latest of each waits (a later acknowledgement or
//! presence supersedes an earlier one).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::FutureExt;
use telex_types::presence::DevicePresence;
use telex_types::session::{CutOff, ServerFrame};
use telex_types::UserJid;
use tokio::sync::{mpsc, oneshot};

use crate::actor::Cmd;
use crate::hub::{FrameRx, SessionId};

/// What the actor did next.
#[derive(Debug)]
pub enum LinkEvent {
    Frame(Box<ServerFrame>),
    /// The actor let go of the session: with the reason, if the server cut it off.
    Ended(Option<CutOff>),
}

type Reservation = BoxFuture<'static, Result<mpsc::OwnedPermit<Cmd>, mpsc::error::SendError<()>>>;

pub struct DeviceLink {
    user: UserJid,
    device: String,
    id: SessionId,
    actor: mpsc::Sender<Cmd>,
    frames: FrameRx,
    kill: Option<oneshot::Receiver<CutOff>>,
    /// Not yet in the actor's mailbox.
    ack: Option<u64>,
    presence: Option<DevicePresence>,
    /// Waiting for room in a full mailbox (rare: only then is anything allocated).
    reserving: Option<Reservation>,
}

impl DeviceLink {
    pub(crate) fn new(
        user: UserJid,
        device: String,
        id: SessionId,
        actor: mpsc::Sender<Cmd>,
        frames: FrameRx,
        kill: oneshot::Receiver<CutOff>,
    ) -> Self {
        DeviceLink { user, device, id, actor, frames, kill: Some(kill), ack: None, presence: None, reserving: None }
    }

    pub fn user(&self) -> &UserJid {
        &self.user
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// The device has every entry up to `position`.
    pub fn ack(&mut self, position: u64) {
        self.ack = Some(self.ack.map_or(position, |a| a.max(position)));
    }

    /// The device's presence (the first one also releases a held delivery).
    pub fn set_presence(&mut self, presence: DevicePresence) {
        self.presence = Some(presence);
    }

    /// The next command for the actor, if any is waiting.
    fn next_cmd(&mut self) -> Option<Cmd> {
        let (device, id) = (self.device.clone(), self.id);
        if let Some(presence) = self.presence.take() {
            return Some(Cmd::SetPresence { device, id, presence });
        }
        self.ack.take().map(|position| Cmd::Ack { device, id, position })
    }

    /// Puts back a command that could not be handed over yet.
    fn keep(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::SetPresence { presence, .. } => {
                self.presence.get_or_insert(presence);
            }
            Cmd::Ack { position, .. } => self.ack(position),
            _ => {}
        }
    }

    /// Hands waiting commands to the actor as far as its mailbox allows.
    fn flush(&mut self, cx: &mut Context<'_>) {
        while let Some(cmd) = self.next_cmd() {
            if let Some(reserving) = self.reserving.as_mut() {
                match reserving.poll_unpin(cx) {
                    Poll::Ready(Ok(permit)) => {
                        self.reserving = None;
                        permit.send(cmd);
                        continue;
                    }
                    // The actor is gone; the frame stream says so next.
                    Poll::Ready(Err(_)) => {
                        self.reserving = None;
                        return;
                    }
                    Poll::Pending => {
                        self.keep(cmd);
                        return;
                    }
                }
            }
            match self.actor.try_send(cmd) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(cmd)) => {
                    let actor = self.actor.clone();
                    self.reserving =
                        Some(Box::pin(
                            async move { actor.reserve_owned().await.map_err(|_| mpsc::error::SendError(())) },
                        ));
                    self.keep(cmd);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }

    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<LinkEvent> {
        self.flush(cx);
        if let Some(kill) = self.kill.as_mut() {
            if let Poll::Ready(why) = Pin::new(kill).poll(cx) {
                self.kill = None;
                if let Ok(why) = why {
                    return Poll::Ready(LinkEvent::Ended(Some(why)));
                }
            }
        }
        match self.frames.poll_recv(cx) {
            Poll::Ready(Some(f)) => Poll::Ready(LinkEvent::Frame(f)),
            Poll::Ready(None) => {
                let why = self.kill.as_mut().and_then(|k| k.try_recv().ok());
                Poll::Ready(LinkEvent::Ended(why))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for DeviceLink {
    fn drop(&mut self) {
        let cmd = Cmd::Detach { device: std::mem::take(&mut self.device), id: self.id };
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.actor.try_send(cmd) {
            // A busy actor still learns of it (else the device stays attached until its queue
            // is found closed).
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let actor = self.actor.clone();
                rt.spawn(async move {
                    let _ = actor.send(cmd).await;
                });
            }
        }
        tracing::info!(user = %self.user, "session detached");
    }
}
