//! The call as an actix actor: a thin shell around [`CallFlow`]. Each handler feeds the
//! flow one input with `now`, carries its outputs out (to the SIP agent, the media shard,
//! the progress and record sinks) and re-arms the one timer. It decides nothing.
//!
//! Threads: the actor runs on an actix system (one thread); the SIP agent on its own tokio
//! runtime, whose event sink posts to the actor's mailbox; the media shard on its glommio
//! thread, whose events come on the leg's own bounded channel.
#![allow(clippy::disallowed_methods)] // the shell reads the clock; the flow never does

use super::flow::{CallFlow, Command, FlowConfig, Input, MediaCommand, Output, Progress};
use crate::clock::unix_ms;
use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, SpawnHandle, StreamHandler,
    WrapFuture,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use waihu_engine::session::PayloadMap;
use waihu_engine::worker::{self, Command as ShardCommand, Event as MediaEvent, MediaPlane, WorkerError};
use waihu_model::{CallId, CallRecord};
use waihu_sip::sdp::{Codec, Direction, LocalMedia, Negotiated};
use waihu_sip::trunk::TrunkConfig;
use waihu_sip::{OutboundCall, SipAgent, SipCommand, SipEvent};

/// What every call shares: the SIP agent and the media plane.
#[derive(Debug, Clone)]
pub struct CallEnv {
    pub sip: SipAgent,
    pub plane: Arc<MediaPlane>,
}

/// One call to place.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub flow: FlowConfig,
    pub trunk: Arc<TrunkConfig>,
    /// The media shard for the leg; None picks one from the call id. A leg that will be
    /// bridged to another goes on that one's shard.
    pub shard: Option<usize>,
    /// The Call-ID's local part (the agent adds its domain); None: the agent picks one.
    /// A campaign names it after the attempt, so the attempt record knows it before the
    /// INVITE is sent.
    pub call_id: Option<String>,
}

/// Why a call could not start at all (no record: nothing was sent).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("media: {0}")]
    Media(#[from] WorkerError),
    #[error("media: the shard did not answer the allocation")]
    ShardGone,
}

/// Where a call's progress goes, as it happens.
pub type ProgressSink = Box<dyn FnMut(CallId, &Progress)>;
/// Where a call's record goes, once.
pub type RecordSink = Box<dyn FnOnce(CallRecord)>;

/// A command for a live call.
#[derive(Debug, Clone)]
pub struct CallCommand(pub Command);

impl Message for CallCommand {
    type Result = ();
}

/// A SIP event for the call, from the agent's threads.
#[derive(Debug)]
struct Sip(SipEvent);

impl Message for Sip {
    type Result = ();
}

pub struct CallActor {
    flow: CallFlow,
    env: CallEnv,
    shard: usize,
    trunk: Arc<TrunkConfig>,
    call_id: Option<String>,
    sip: Option<OutboundCall>,
    timer: Option<SpawnHandle>,
    progress: ProgressSink,
    record: Option<RecordSink>,
    /// A bridge across shards is being set up (two round trips to the shards): media
    /// commands that come meanwhile wait here, so none is applied before it (an unbridge
    /// overtaken by the bridge would leave the legs connected).
    bridging: Option<Vec<MediaCommand>>,
}

impl std::fmt::Debug for CallActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallActor").field("id", &self.flow.id()).field("shard", &self.shard).finish()
    }
}

impl CallActor {
    /// Opens the call's media leg, then starts the call on the current actix system. The
    /// record reaches `record` when the call is over, however it ends.
    pub async fn start(
        env: CallEnv,
        spec: CallSpec,
        progress: ProgressSink,
        record: RecordSink,
    ) -> Result<Addr<CallActor>, StartError> {
        let id = spec.flow.id;
        let shard = spec.shard.unwrap_or_else(|| env.plane.shard_for(id));
        let (owner, events) = worker::owner_channel();
        // Binding a socket can block for milliseconds in the kernel: not on the thread that
        // carries every call's actor.
        let plane = env.plane.clone();
        let reply =
            tokio::task::spawn_blocking(move || plane.begin_allocate_on(shard, id, PayloadMap::default(), owner))
                .await
                .map_err(|_| StartError::ShardGone)??;
        let local_rtp: SocketAddr = reply.recv_async().await.map_err(|_| StartError::ShardGone)??;
        let local = LocalMedia {
            address: local_rtp,
            codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
            telephone_event: true,
            comfort_noise: true,
            ptime: 20,
            direction: Direction::SendRecv,
            session_id: id,
            version: 1,
        };
        let mut cfg = spec.flow;
        cfg.started_unix_ms = unix_ms();
        Ok(CallActor::create(move |ctx| {
            ctx.add_stream(events.into_stream());
            CallActor {
                flow: CallFlow::new(cfg, local, Instant::now()),
                env,
                shard,
                trunk: spec.trunk,
                call_id: spec.call_id,
                sip: None,
                timer: None,
                progress,
                record: Some(record),
                bridging: None,
            }
        }))
    }

    fn feed(&mut self, input: Input, ctx: &mut Context<Self>) {
        self.flow.handle_input(input, Instant::now());
        self.drive(ctx);
    }

    /// Carries out what the flow asked for, then re-arms the one timer.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        while let Some(o) = self.flow.poll_output() {
            match o {
                Output::Invite { sdp } => {
                    let addr = ctx.address();
                    let sink: waihu_sip::EventSink = Arc::new(move |ev| addr.do_send(Sip(ev)));
                    let target = self.flow.target().to_string();
                    let input = match self.env.sip.invite(&target, &self.trunk, &sdp, self.call_id.as_deref(), sink) {
                        Ok(c) => {
                            let call_id = c.call_id.clone();
                            self.sip = Some(c);
                            Input::Invited { call_id }
                        }
                        Err(e) => Input::InviteFailed { error: e.to_string() },
                    };
                    self.flow.handle_input(input, Instant::now());
                }
                Output::Sip(cmd) => self.send_sip(cmd),
                Output::Media(m) => self.send_media(m, ctx),
                Output::Progress(p) => (self.progress)(self.flow.id(), &p),
                Output::Finished(r) => {
                    if let Some(sink) = self.record.take() {
                        sink(*r);
                    }
                    ctx.stop();
                    return;
                }
            }
        }
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some((at, _)) = self.flow.poll_timeout() {
            let wait = at.saturating_duration_since(Instant::now());
            self.timer = Some(ctx.run_later(wait, |act, ctx| {
                act.timer = None;
                act.flow.handle_timeout(Instant::now());
                act.drive(ctx);
            }));
        }
    }

    fn send_sip(&mut self, cmd: SipCommand) {
        let request = cmd.request();
        let error = match &self.sip {
            Some(c) => c.send(cmd).err().map(|e| e.to_string()),
            None => Some("no SIP dialog".to_string()),
        };
        // A request that cannot even be handed over fails now, as a result the flow
        // understands; an answer to the far end that cannot is moot (the dialog is gone).
        if let (Some(error), Some(request)) = (error, request) {
            let ev = SipEvent::Response { request, status: None, sdp: None, error: Some(error) };
            self.flow.handle_input(Input::Sip(ev), Instant::now());
        }
    }

    fn send_media(&mut self, m: MediaCommand, ctx: &mut Context<Self>) {
        let call = self.flow.id();
        if let Some(waiting) = self.bridging.as_mut() {
            waiting.push(m);
            return;
        }
        let cmds: Vec<ShardCommand> = match m {
            MediaCommand::Bridge { peer, shard: Some(other) } if other != self.shard => {
                // The peer is on another shard: both shards are told (two round trips).
                let (plane, mine) = (self.env.plane.clone(), self.shard);
                self.bridging = Some(Vec::new());
                ctx.spawn(async move { plane.bridge_across((call, mine), (peer, other)).await }.into_actor(self).map(
                    move |r, act, ctx| {
                        if let Err(e) = r {
                            let error = MediaEvent::Error { call, error: format!("bridge across shards: {e}") };
                            act.feed(Input::Media(error), ctx);
                        }
                        // What came meanwhile, in order (another bridge across waits again).
                        let waiting = act.bridging.take().unwrap_or_default();
                        for m in waiting {
                            act.send_media(m, ctx);
                        }
                    },
                ));
                return;
            }
            MediaCommand::Follow(n) => follow(call, &n),
            MediaCommand::StartAmd { params, run } => vec![ShardCommand::StartAmd { call, params, run }],
            MediaCommand::StopAmd => vec![ShardCommand::StopAmd { call }],
            MediaCommand::Keepalive(mode) => vec![ShardCommand::Keepalive { call, mode }],
            MediaCommand::Hold { music } => vec![ShardCommand::Hold { call, music }],
            MediaCommand::Resume => vec![ShardCommand::Resume { call }],
            MediaCommand::Bridge { peer, .. } => vec![ShardCommand::Bridge { a: call, b: peer }],
            MediaCommand::Unbridge => vec![ShardCommand::Unbridge { call }],
            MediaCommand::Play { audio } => vec![ShardCommand::Play { call, audio, looped: false }],
            MediaCommand::StartRecording => vec![ShardCommand::StartRecording { call }],
            MediaCommand::StopRecording => vec![ShardCommand::StopRecording { call }],
            MediaCommand::Close => vec![ShardCommand::Close { call }],
        };
        for cmd in cmds {
            let closing = matches!(cmd, ShardCommand::Close { .. });
            let sent = self.env.plane.shard(self.shard).ok_or(WorkerError::ShardGone).and_then(|s| s.send(cmd));
            if let Err(e) = sent {
                let now = Instant::now();
                let error = MediaEvent::Error { call, error: e.to_string() };
                self.flow.handle_input(Input::Media(error), now);
                if closing {
                    // No shard, no statistics: the record goes out without them.
                    let closed = MediaEvent::Closed { call, stats: Default::default() };
                    self.flow.handle_input(Input::Media(closed), now);
                }
            }
        }
    }
}

/// Points the shard's session at what an offer/answer settled: payload types, rtcp-mux,
/// then the far end's address (strict source: a stranger streaming at our port is not
/// heard, so it cannot change the AMD verdict).
fn follow(call: CallId, n: &Negotiated) -> Vec<ShardCommand> {
    let mut p = PayloadMap { pcmu: None, pcma: None, opus: None, telephone_event: n.telephone_event };
    match n.codec {
        Codec::Pcmu => p.pcmu = Some(n.payload_type),
        Codec::Pcma => p.pcma = Some(n.payload_type),
        Codec::Opus => p.opus = Some(n.payload_type),
    }
    vec![
        ShardCommand::SetPayloads { call, payloads: p },
        ShardCommand::SetRtcpMux { call, mux: n.rtcp_mux },
        ShardCommand::SetRemote { call, remote: n.remote, symmetric: false },
    ]
}

impl Actor for CallActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.drive(ctx);
    }
}

impl Handler<Sip> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: Sip, ctx: &mut Context<Self>) {
        self.feed(Input::Sip(msg.0), ctx);
    }
}

impl Handler<CallCommand> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: CallCommand, ctx: &mut Context<Self>) {
        self.feed(Input::Command(msg.0), ctx);
    }
}

impl StreamHandler<MediaEvent> for CallActor {
    fn handle(&mut self, ev: MediaEvent, ctx: &mut Context<Self>) {
        self.feed(Input::Media(ev), ctx);
    }

    /// The shard dropped the leg's channel. After `Closed` that is the normal end; without
    /// it the shard died, and the flow hears so (it ends the call and writes the record
    /// without media statistics) instead of waiting for a `Closed` that never comes.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        if self.flow.media_closed() {
            return;
        }
        let call = self.flow.id();
        let now = Instant::now();
        let gone = MediaEvent::ShardError { error: "the media shard closed the leg's channel".into() };
        self.flow.handle_input(Input::Media(gone), now);
        self.flow.handle_input(Input::Media(MediaEvent::Closed { call, stats: Default::default() }), now);
        self.drive(ctx);
    }
}
