//! The SIP user agent: a thin adapter over rsipstack. This is the only module that sees
//! rsipstack types; callers get [`SipAgent`], [`OutboundCall`] and [`SipEvent`], and feed
//! the events to the pure [`crate::call::Call`].
//!
//! Built around rsipstack 0.7.14's known gaps (../shared/notes/sip-stack.md): our own
//! Call-ID domain on every call, `remove_dialog` once each dialog ends, and CANCEL through
//! the early dialog handle (`InviteDialog::cancel`) rather than a lookup by early id.

use crate::call::Failure;
use crate::guard::{version_supported, TcpAdmission, TcpLimits};
use crate::registrar::{Register, RegistrarConfig, Reply};
use crate::registry::Registry;
use crate::trunk::{Transport, TrunkConfig};
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{DialogState, TerminatedReason, TransactionHandle};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, HostWithPort, Method, SipMessage, StatusCode, Uri, Version};
use rsipstack::transaction::endpoint::{EndpointInnerRef, EndpointOption, TransportEventInspector};
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportEvent, TransportLayer};
use rsipstack::EndpointBuilder;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Local SIP address (UDP, and TCP on the same port when `tcp`). Port 0 picks one.
    pub bind: SocketAddr,
    pub tcp: bool,
    pub user_agent: String,
    /// Domain part of our Call-IDs.
    pub call_id_domain: String,
    /// SIP timer T1, the round-trip estimate (RFC 3261 §17.1.1.1: 500 ms on the open
    /// Internet, smaller where the RTT is known to be small, e.g. a carrier interconnect).
    /// Retransmissions start at T1, and the 64×T1 timers follow it: B and F (no answer at
    /// all) and M (RFC 6026: how long an answered INVITE's transaction, and the memory it
    /// holds, is kept to absorb retransmitted 2xx).
    pub t1: std::time::Duration,
    /// Caps on inbound TCP connections (total and per source IP).
    pub tcp_limits: TcpLimits,
    /// A TCP connection that carries nothing for this long is closed (the stack's own
    /// stream idle timeout; zero turns it off).
    pub tcp_idle: std::time::Duration,
    /// Serve REGISTER for agents' phones (digest auth); None answers REGISTER 405.
    pub registrar: Option<RegistrarConfig>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tcp: false,
            user_agent: concat!("waihu/", env!("CARGO_PKG_VERSION")).into(),
            call_id_domain: "waihu.invalid".into(),
            t1: std::time::Duration::from_millis(500),
            tcp_limits: TcpLimits::default(),
            tcp_idle: std::time::Duration::from_secs(120),
            registrar: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("SIP transport: {0}")]
    Transport(String),
    #[error("bad SIP URI {uri:?}: {error}")]
    BadUri { uri: String, error: String },
    #[error("SIP: {0}")]
    Stack(String),
}

fn stack(e: impl std::fmt::Display) -> SipError {
    SipError::Stack(e.to_string())
}

/// Requests we send inside a call; each one's outcome comes back as
/// [`SipEvent::Response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Cancel,
    Bye,
    /// A re-INVITE with a new offer (hold, resume).
    Reinvite,
    /// A session-timer refresh (RFC 4028): a re-INVITE with our current offer.
    Refresh,
    /// A blind transfer (RFC 3515).
    Refer,
}

/// What the call asks of its SIP dialog. Nothing here waits for the far end: results come
/// back as [`SipEvent`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipCommand {
    /// Give up before the answer. The INVITE then ends with 487 (or a 200 that raced the
    /// CANCEL, which the call ends with a BYE).
    Cancel,
    /// Hang up an answered call.
    Bye,
    /// re-INVITE with this offer. The response carries the far end's answer.
    Reinvite { sdp: String },
    /// Session refresh with this offer and Session-Expires (we are the refresher).
    Refresh { sdp: String, secs: u32 },
    /// REFER the far end to `target`.
    Refer { target: String },
    /// Answer the far end's re-offer `id`: 200 with this SDP, or 488 with None.
    AnswerReoffer { id: u64, sdp: Option<String> },
    /// Answer the far end's REFER `id` with this final status (e.g. 603 Decline).
    AnswerRefer { id: u64, status: u16 },
    /// After accepting a REFER (202): the NOTIFY that says how the referred call went
    /// (a sipfrag with `status`), ending the REFER's implicit subscription.
    NotifyRefer { status: u16 },
}

impl SipCommand {
    /// The request this command sends, if it sends one (answers to the far end's requests
    /// do not).
    pub fn request(&self) -> Option<Request> {
        match self {
            SipCommand::Cancel => Some(Request::Cancel),
            SipCommand::Bye => Some(Request::Bye),
            SipCommand::Reinvite { .. } => Some(Request::Reinvite),
            SipCommand::Refresh { .. } => Some(Request::Refresh),
            SipCommand::Refer { .. } => Some(Request::Refer),
            SipCommand::AnswerReoffer { .. } | SipCommand::AnswerRefer { .. } | SipCommand::NotifyRefer { .. } => None,
        }
    }
}

/// What the far end did, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipEvent {
    /// 1xx other than 100 (180, 183 with or without SDP).
    Provisional { status: u16, sdp: Option<String> },
    /// The final response to our INVITE (after any 401/407 round, which the stack answers
    /// with our credentials).
    Final { status: u16, sdp: Option<String> },
    /// The 2xx asked for session timers (RFC 4028). With `we_refresh` (refresher=uac) we
    /// must send a refresh before `secs` run out, or the far end ends the call.
    SessionTimer { secs: u32, we_refresh: bool },
    /// The far end hung up (BYE).
    Bye,
    /// The far end re-offered media in the dialog (re-INVITE or UPDATE: hold, a new
    /// address, a refresh), with its offer or none (then ours goes in the 200). It waits
    /// for [`SipCommand::AnswerReoffer`] with the same `id`.
    Reoffer { id: u64, offer: Option<String> },
    /// The far end asked us to call someone else. It waits for [`SipCommand::AnswerRefer`].
    Refer { id: u64, target: String },
    /// A NOTIFY about the REFER we sent (already answered 200): the transfer's progress as
    /// the status line of its sipfrag body (RFC 3515 §2.4.5), when it has one.
    Notify { status: Option<u16> },
    /// The outcome of one of our [`Request`]s: its final status, the body of a 2xx, or
    /// why no response came (`status` None).
    Response { request: Request, status: Option<u16>, sdp: Option<String>, error: Option<String> },
    /// The INVITE got no final response (`Failure::Timeout`) or could not be sent, or the
    /// stack failed (`Failure::Local`). Never a SIP answer: the call records it as such.
    Failed { failure: Failure, detail: String },
    /// The dialog is gone: nothing more will come for this call.
    Ended,
}

/// Where a call's [`SipEvent`]s go. Called on the SIP runtime's threads; it must not block.
pub type EventSink = Arc<dyn Fn(SipEvent) + Send + Sync>;

/// The user agent: one endpoint, its transports, and its dialogs.
#[derive(Clone)]
pub struct SipAgent {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: EndpointInnerRef,
    dialogs: Arc<DialogLayer>,
    cancel: CancellationToken,
    local: SocketAddr,
    cfg: AgentConfig,
    seq: AtomicU64,
    /// The runtime the agent was started on: every call's work runs there.
    rt: tokio::runtime::Handle,
    /// One dialog-state channel for every call, routed by Call-ID to each call's own
    /// small channel. A channel of `DialogState` costs about 10 KiB (its first block), and
    /// the stack keeps the sender as long as the INVITE transaction (Timer M, 32 s after
    /// the answer): one per call cost 10 KiB × the calls of the last 32 s.
    states: rsipstack::dialog::dialog::DialogStateSender,
    routes: Routes,
    registry: Option<Arc<Registry>>,
}

type Routes = Arc<std::sync::Mutex<HashMap<String, mpsc::UnboundedSender<Box<DialogState>>>>>;

fn state_call_id(s: &DialogState) -> &str {
    match s {
        DialogState::Calling(id)
        | DialogState::Trying(id)
        | DialogState::Early(id, _)
        | DialogState::WaitAck(id, _)
        | DialogState::Confirmed(id, _)
        | DialogState::Updated(id, _, _)
        | DialogState::Publish(id, _, _)
        | DialogState::Notify(id, _, _)
        | DialogState::Refer(id, _, _)
        | DialogState::Message(id, _, _)
        | DialogState::Info(id, _, _)
        | DialogState::Options(id, _, _)
        | DialogState::Terminated(id, _) => &id.call_id,
    }
}

/// Routes the shared dialog states to their calls. A state for a call that is gone is
/// dropped (an in-dialog request in it then gets the stack's own error answer).
async fn route_states(mut rx: rsipstack::dialog::dialog::DialogStateReceiver, routes: Routes) {
    while let Some(s) = rx.recv().await {
        let tx = routes.lock().ok().and_then(|r| r.get(state_call_id(&s)).cloned());
        if let Some(tx) = tx {
            let _ = tx.send(Box::new(s));
        }
    }
}

/// Takes a call's route out when its follow task ends, however it ends.
struct RouteGuard {
    routes: Routes,
    call_id: String,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        if let Ok(mut r) = self.routes.lock() {
            r.remove(&self.call_id);
        }
    }
}

impl std::fmt::Debug for SipAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipAgent").field("local", &self.inner.local).finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl SipAgent {
    /// Binds the transports and starts serving. Must run inside a tokio runtime.
    pub async fn start(cfg: AgentConfig) -> Result<SipAgent, SipError> {
        let cancel = CancellationToken::new();
        let transports = TransportLayer::new(cancel.clone());
        transports.set_stream_idle_timeout(cfg.tcp_idle);
        let udp = UdpConnection::create_connection(cfg.bind, None, Some(cancel.child_token()))
            .await
            .map_err(|e| SipError::Transport(format!("bind UDP {}: {e}", cfg.bind)))?;
        let local = udp.get_addr().get_socketaddr().map_err(|e| SipError::Transport(e.to_string()))?;
        transports.add_transport(udp.into());
        if cfg.tcp {
            let tcp = TcpListenerConnection::new(local, None)
                .await
                .map_err(|e| SipError::Transport(format!("bind TCP {local}: {e}")))?;
            transports.add_transport(tcp.into());
        }
        let timers = EndpointOption { t1: cfg.t1, t1x64: cfg.t1 * 64, ..EndpointOption::default() };
        let inspector = Inspector {
            listen: local,
            user_agent: cfg.user_agent.clone(),
            tcp: std::sync::Mutex::new(TcpAdmission::new(cfg.tcp_limits)),
        };
        let endpoint = EndpointBuilder::new()
            .with_option(timers)
            .with_transport_inspector(Box::new(inspector))
            .with_cancel_token(cancel.clone())
            .with_transport_layer(transports)
            .with_user_agent(&cfg.user_agent)
            .build();
        let incoming = endpoint.incoming_transactions().map_err(stack)?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let serving = endpoint.inner.clone();
        tokio::spawn(async move {
            let _ = serving.serve().await;
        });
        let registry = cfg.registrar.clone().map(Registry::start);
        tokio::spawn(serve_incoming(dialogs.clone(), incoming, registry.clone()));
        let (states, states_rx) = dialogs.new_dialog_state_channel();
        let routes = Routes::default();
        tokio::spawn(route_states(states_rx, routes.clone()));
        Ok(SipAgent {
            inner: Arc::new(Inner {
                endpoint: endpoint.inner.clone(),
                dialogs,
                cancel,
                local,
                cfg,
                seq: AtomicU64::new(1),
                rt: tokio::runtime::Handle::current(),
                states,
                routes,
                registry,
            }),
        })
    }

    /// Our SIP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The registrar, when this agent serves REGISTER.
    pub fn registry(&self) -> Option<Arc<Registry>> {
        self.inner.registry.clone()
    }

    /// Dialogs the stack still holds (0 once every call has ended cleanly).
    pub fn dialog_count(&self) -> usize {
        self.inner.dialogs.len()
    }

    /// Sends an INVITE with `offer` (SDP) to `target` through `trunk`. Returns at once:
    /// what happens next reaches `sink`, ending with [`SipEvent::Ended`]. Callable from any
    /// thread; the call's work runs on the agent's runtime.
    pub fn invite(
        &self,
        target: &str,
        trunk: &TrunkConfig,
        offer: &str,
        call_id: Option<&str>,
        sink: EventSink,
    ) -> Result<OutboundCall, SipError> {
        let uri = |s: &str| Uri::try_from(s).map_err(|e| SipError::BadUri { uri: s.into(), error: e.to_string() });
        let callee = uri(target)?;
        let local = self.inner.local;
        let caller = match trunk.from.as_deref() {
            Some(f) if f.starts_with("sip:") || f.starts_with("sips:") => uri(f)?,
            Some(user) => uri(&format!("sip:{user}@{}", trunk.host))?,
            None => uri(&format!("sip:waihu@{}", local.ip()))?,
        };
        let contact = uri(&format!("sip:waihu@{local}"))?;
        let transport = match trunk.transport {
            Transport::Udp => rsipstack::sip::Transport::Udp,
            Transport::Tcp => rsipstack::sip::Transport::Tcp,
        };
        let host = HostWithPort::try_from(format!("{}:{}", trunk.host, trunk.port))
            .map_err(|e| SipError::BadUri { uri: trunk.host.clone(), error: e.to_string() })?;
        let mut headers = Vec::new();
        if let Some(pai) = trunk.p_asserted_identity.as_deref() {
            let v = if pai.contains(':') { format!("<{pai}>") } else { format!("<sip:{pai}@{}>", trunk.host) };
            headers.push(Header::Other("P-Asserted-Identity".into(), v));
        }
        headers.extend(trunk.headers.iter().map(|(n, v)| Header::Other(n.clone(), v.clone())));
        let call_id = match call_id {
            Some(id) => format!("{id}@{}", self.inner.cfg.call_id_domain),
            None => {
                let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
                format!(
                    "{:x}-{n}@{}",
                    std::process::id() as u64 * 0x1_0000_0000 + local.port() as u64,
                    self.inner.cfg.call_id_domain
                )
            }
        };
        let credential = trunk.username.as_ref().map(|u| Credential {
            username: u.clone(),
            password: trunk.password.clone().unwrap_or_default(),
            realm: trunk.realm.clone(),
            auth_username: None,
        });
        let opt = InviteOption {
            caller_display_name: trunk.from_display.clone(),
            caller,
            callee,
            destination: Some(SipAddr::new(transport, host)),
            content_type: Some("application/sdp".into()),
            offer: Some(offer.as_bytes().to_vec()),
            contact,
            credential,
            headers: (!headers.is_empty()).then_some(headers),
            call_id: Some(call_id.clone()),
            ..Default::default()
        };
        // The stack spawns the INVITE's tasks on the current runtime: make that ours, not
        // the caller's (an actix thread has its own).
        let _rt = self.inner.rt.enter();
        let (state_tx, state_rx) = mpsc::unbounded_channel();
        let routes = self.inner.routes.clone();
        routes.lock().map_err(|_| stack("route table poisoned"))?.insert(call_id.clone(), state_tx);
        let route = RouteGuard { routes, call_id: call_id.clone() };
        let (dialog, handle) = self.inner.dialogs.do_invite_async(opt, self.inner.states.clone()).map_err(stack)?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let follow = follow(self.inner.dialogs.clone(), dialog, state_rx, handle, cmd_rx, sink);
        self.inner.rt.spawn(async move {
            let _route = route;
            follow.await
        });
        Ok(OutboundCall { call_id, commands: cmd_tx })
    }

    /// One OPTIONS to the trunk: the final status, or None when nothing answered in time.
    pub async fn options(&self, trunk: &TrunkConfig, timeout: std::time::Duration) -> Option<u16> {
        let target = format!("sip:{}:{}", trunk.host, trunk.port);
        let fut = options_once(self.inner.endpoint.clone(), target, trunk.transport);
        tokio::time::timeout(timeout, fut).await.ok().flatten()
    }

    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
    }
}

async fn options_once(endpoint: EndpointInnerRef, target: String, transport: Transport) -> Option<u16> {
    use rsipstack::transaction::key::{TransactionKey, TransactionRole};
    use rsipstack::transaction::transaction::Transaction;
    let uri = Uri::try_from(target.as_str()).ok()?;
    let via = endpoint.get_via(None, None).ok()?;
    let from = rsipstack::sip::typed::From { display_name: None, uri: uri.clone(), params: vec![] }
        .with_tag(rsipstack::transaction::make_tag());
    let to = rsipstack::sip::typed::To { display_name: None, uri: uri.clone(), params: vec![] };
    let request = endpoint.make_request(Method::Options, uri.clone(), via, from, to, 1, None);
    let key = TransactionKey::from_request(&request, TransactionRole::Client).ok()?;
    let mut tx = Transaction::new_client(key, request, endpoint, None);
    let t = match transport {
        Transport::Udp => rsipstack::sip::Transport::Udp,
        Transport::Tcp => rsipstack::sip::Transport::Tcp,
    };
    tx.destination = Some(SipAddr::new(t, uri.host_with_port.clone()));
    tx.send().await.ok()?;
    while let Some(msg) = tx.receive().await {
        if let rsipstack::sip::SipMessage::Response(r) = msg {
            let code = r.status_code.code();
            if code >= 200 {
                return Some(code);
            }
        }
    }
    None
}

/// One call's SIP side: turns the stack's dialog states and the INVITE's outcome into
/// [`SipEvent`]s, carries out [`SipCommand`]s (each request on its own task, its result an
/// event), and removes the dialog from the stack's registry once it has ended. Decides
/// nothing: re-offers and REFERs wait for the call's answer.
async fn follow(
    dialogs: Arc<DialogLayer>,
    dialog: InviteDialog,
    mut states: mpsc::UnboundedReceiver<Box<DialogState>>,
    handle: rsipstack::platform::JoinHandle<rsipstack::dialog::invitation::InviteAsyncResult>,
    mut commands: mpsc::UnboundedReceiver<SipCommand>,
    sink: EventSink,
) {
    let body = |b: &[u8]| (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned());
    let mut handle = Box::pin(handle);
    let mut answered = false;
    let mut final_seen = false;
    let mut pending: HashMap<u64, TransactionHandle> = HashMap::new();
    let mut next_id = 1u64;
    let mut owner_gone = false;
    // What we have already sent to end the call, so that the owner going away does not
    // send it twice.
    let (mut cancel_sent, mut bye_sent) = (false, false);
    let mut notify_held: Option<Option<u16>> = None;
    // The dialog can end before the INVITE's result reaches us (the select is biased to
    // states; a CANCEL crossing the 200, or a BYE right after it): kept until the result.
    let mut terminated_early: Option<TerminatedReason> = None;
    loop {
        tokio::select! {
            biased;
            cmd = commands.recv(), if !owner_gone => match cmd {
                Some(cmd) => {
                    cancel_sent |= cmd == SipCommand::Cancel;
                    bye_sent |= cmd == SipCommand::Bye;
                    run(cmd, &dialog, &dialogs, &mut pending, &sink);
                }
                None => {
                    // The call's owner is gone without ending it: end it so nothing sticks.
                    owner_gone = true;
                    if final_seen && !answered {
                        break;
                    }
                    if answered && !bye_sent {
                        bye_sent = true;
                        run(SipCommand::Bye, &dialog, &dialogs, &mut pending, &sink);
                    } else if !answered && !cancel_sent {
                        cancel_sent = true;
                        run(SipCommand::Cancel, &dialog, &dialogs, &mut pending, &sink);
                    }
                }
            },
            state = states.recv() => match state.map(|s| *s) {
                Some(DialogState::Early(_, resp)) => {
                    let status = resp.status_code.code();
                    if status > 100 {
                        sink(SipEvent::Provisional { status, sdp: body(&resp.body) });
                    }
                }
                Some(DialogState::Terminated(id, reason)) => {
                    if answered && matches!(reason, TerminatedReason::UasBye) {
                        sink(SipEvent::Bye);
                    }
                    dialogs.remove_dialog(&id);
                    if final_seen {
                        break;
                    }
                    terminated_early = Some(reason);
                }
                Some(DialogState::Updated(_, req, h)) => {
                    let id = next_id;
                    next_id += 1;
                    pending.insert(id, h);
                    sink(SipEvent::Reoffer { id, offer: body(&req.body) });
                }
                Some(DialogState::Refer(_, req, h)) => {
                    let target = req
                        .headers
                        .iter()
                        .find(|h| h.name().eq_ignore_ascii_case("Refer-To"))
                        .map(|h| h.value().to_string())
                        .unwrap_or_default();
                    let id = next_id;
                    next_id += 1;
                    pending.insert(id, h);
                    sink(SipEvent::Refer { id, target });
                }
                Some(DialogState::Notify(_, req, h)) => {
                    // The call hears of it once our 200 is on the wire (the stack then
                    // returns the dialog to Confirmed): a BYE it sends in reaction must not
                    // overtake the 200 (SIPp, rightly, fails a call that does).
                    notify_held = Some(sipfrag_status(&req.body));
                    tokio::spawn(async move {
                        let _ = h.reply(StatusCode::OK).await;
                    });
                }
                Some(DialogState::Confirmed(..)) => {
                    if let Some(status) = notify_held.take() {
                        sink(SipEvent::Notify { status });
                    }
                }
                // INFO, in-dialog OPTIONS: 200.
                Some(DialogState::Info(_, _, h) | DialogState::Options(_, _, h)) => {
                    tokio::spawn(async move {
                        let _ = h.reply(StatusCode::OK).await;
                    });
                }
                Some(_) => {}
                None => break,
            },
            result = &mut handle, if !final_seen => {
                final_seen = true;
                match result {
                    Ok(Ok((_, Some(resp)))) => {
                        let status = resp.status_code.code();
                        answered = (200..300).contains(&status);
                        sink(SipEvent::Final { status, sdp: body(&resp.body) });
                        if answered {
                            let se = resp.headers.iter().find(|h| {
                                h.name().eq_ignore_ascii_case("Session-Expires") || h.name().eq_ignore_ascii_case("x")
                            });
                            if let Some((secs, we_refresh)) = se.and_then(|h| session_expires(h.value())) {
                                sink(SipEvent::SessionTimer { secs, we_refresh });
                            }
                            if let Some(reason) = terminated_early.take() {
                                // No second Terminated will come: the stack ignores late
                                // transitions. Report what ended it and stop here.
                                if matches!(reason, TerminatedReason::UasBye) {
                                    sink(SipEvent::Bye);
                                }
                                break;
                            }
                            if owner_gone && !bye_sent {
                                bye_sent = true;
                                run(SipCommand::Bye, &dialog, &dialogs, &mut pending, &sink);
                            }
                        } else {
                            break;
                        }
                    }
                    Ok(Ok((_, None))) => {
                        let detail = "the INVITE ended without a final response".into();
                        sink(SipEvent::Failed { failure: Failure::Timeout, detail });
                        break;
                    }
                    Ok(Err(e)) => {
                        sink(SipEvent::Failed { failure: Failure::Local, detail: e.to_string() });
                        break;
                    }
                    Err(e) => {
                        let detail = format!("INVITE task: {e}");
                        sink(SipEvent::Failed { failure: Failure::Local, detail });
                        break;
                    }
                }
            }
        }
    }
    dialogs.remove_dialog(&dialog.id());
    // Whatever re-offer or REFER is still waiting gets a clear answer.
    for (_, h) in pending.drain() {
        tokio::spawn(async move {
            let _ = h.reply(StatusCode::CallTransactionDoesNotExist).await;
        });
    }
    sink(SipEvent::Ended);
}

/// Carries out one command. Requests run on their own task so the dialog keeps flowing
/// while they wait for the far end.
fn run(
    cmd: SipCommand,
    dialog: &InviteDialog,
    dialogs: &Arc<DialogLayer>,
    pending: &mut HashMap<u64, TransactionHandle>,
    sink: &EventSink,
) {
    let body = |b: &[u8]| (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned());
    let d = dialog.clone();
    let (sink, report_sink) = (sink.clone(), sink.clone());
    let report = move |request, r: Result<Option<rsipstack::sip::Response>, rsipstack::Error>| {
        let ev = match r {
            Ok(Some(resp)) => {
                let status = resp.status_code.code();
                let sdp = if (200..300).contains(&status) { body(&resp.body) } else { None };
                SipEvent::Response { request, status: Some(status), sdp, error: None }
            }
            Ok(None) => SipEvent::Response { request, status: None, sdp: None, error: Some("no response".into()) },
            Err(e) => SipEvent::Response { request, status: None, sdp: None, error: Some(e.to_string()) },
        };
        report_sink(ev);
    };
    match cmd {
        SipCommand::Cancel => {
            tokio::spawn(async move {
                let r = d.cancel().await;
                if let Err(e) = r {
                    report(Request::Cancel, Err(e));
                }
            });
        }
        SipCommand::Bye => {
            let dialogs = dialogs.clone();
            tokio::spawn(async move {
                let r = d.bye().await;
                dialogs.remove_dialog(&d.id());
                // The stack does not say what the BYE's response was, only that it is done.
                let error = r.err().map(|e| e.to_string());
                sink(SipEvent::Response { request: Request::Bye, status: None, sdp: None, error });
            });
        }
        SipCommand::Reinvite { sdp } => {
            tokio::spawn(async move {
                let ct = Header::ContentType("application/sdp".into());
                report(Request::Reinvite, d.reinvite(Some(vec![ct]), Some(sdp.into_bytes())).await);
            });
        }
        SipCommand::Refresh { sdp, secs } => {
            tokio::spawn(async move {
                let headers = vec![
                    Header::ContentType("application/sdp".into()),
                    Header::Other("Session-Expires".into(), format!("{secs};refresher=uac")),
                    Header::Other("Supported".into(), "timer".into()),
                ];
                report(Request::Refresh, d.reinvite(Some(headers), Some(sdp.into_bytes())).await);
            });
        }
        SipCommand::Refer { target } => match Uri::try_from(target.as_str()) {
            Ok(uri) => {
                tokio::spawn(async move {
                    report(Request::Refer, d.refer(uri, None, None).await);
                });
            }
            Err(e) => sink(SipEvent::Response {
                request: Request::Refer,
                status: None,
                sdp: None,
                error: Some(format!("bad SIP URI {target:?}: {e}")),
            }),
        },
        SipCommand::AnswerReoffer { id, sdp } => {
            if let Some(h) = pending.remove(&id) {
                tokio::spawn(async move {
                    let _ = match sdp {
                        Some(sdp) => {
                            let ct = Header::ContentType("application/sdp".into());
                            h.respond(StatusCode::OK, Some(vec![ct]), Some(sdp.into_bytes())).await
                        }
                        None => h.reply(StatusCode::NotAcceptableHere).await,
                    };
                });
            }
        }
        SipCommand::AnswerRefer { id, status } => {
            if let Some(h) = pending.remove(&id) {
                tokio::spawn(async move {
                    let _ = h.reply(StatusCode::from(status)).await;
                });
            }
        }
        SipCommand::NotifyRefer { status } => {
            tokio::spawn(async move {
                // The far end's answer to our NOTIFY changes nothing for the call.
                let _ = d.notify_refer(StatusCode::from(status), "terminated;reason=noresource").await;
            });
        }
    }
}

/// The status code of a sipfrag body (`SIP/2.0 200 OK`), if it has one.
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("SIP/") {
        return None;
    }
    parts.next()?.parse().ok().filter(|s| (100..700).contains(s))
}

/// `Session-Expires: 1800;refresher=uac` → (1800, true). A missing refresher means the
/// answerer (UAS) refreshes (RFC 4028 §7.2 leaves it to the UAS, which names itself).
fn session_expires(v: &str) -> Option<(u32, bool)> {
    let mut parts = v.split(';');
    let secs: u32 = parts.next()?.trim().parse().ok()?;
    let uac = parts.any(|p| p.trim().eq_ignore_ascii_case("refresher=uac"));
    (secs > 0).then_some((secs, uac))
}

/// How long a reply the inspector sends on its own may take.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Sees every transport event before the stack does: answers requests in a SIP version we
/// do not speak with 505, and closes inbound TCP connections over the caps.
struct Inspector {
    listen: SocketAddr,
    user_agent: String,
    tcp: std::sync::Mutex<TcpAdmission<String>>,
}

impl Inspector {
    /// An inbound TCP connection (accepted on our listener), by its remote address.
    fn inbound(&self, c: &SipConnection) -> Option<(String, std::net::IpAddr)> {
        if !matches!(c, SipConnection::Tcp(_)) || c.get_addr().get_socketaddr().ok() != Some(self.listen) {
            return None;
        }
        let remote = c.get_remote_addr()?.get_socketaddr().ok()?;
        Some((remote.to_string(), remote.ip()))
    }
}

#[async_trait::async_trait]
impl TransportEventInspector for Inspector {
    async fn handle(&self, event: TransportEvent) -> Option<TransportEvent> {
        match &event {
            TransportEvent::Incoming(SipMessage::Request(req), conn, from) => {
                if let Version::V(major, minor) = req.version {
                    if !version_supported(major, minor) {
                        let reply = SipMessage::Response(version_not_supported(req, &self.user_agent));
                        // Not awaited here: this is the stack's transport loop, and a TCP
                        // peer that does not read must not stall it.
                        let (conn, from) = (conn.clone(), from.clone());
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(REPLY_TIMEOUT, conn.send(reply, Some(&from))).await;
                        });
                        return None;
                    }
                }
            }
            TransportEvent::New(conn) => {
                if let Some((key, ip)) = self.inbound(conn) {
                    let admitted = self.tcp.lock().map(|mut t| t.admit(key, ip)).unwrap_or(false);
                    if !admitted {
                        // Our half is shut at once; a peer that ignores that is cut off by
                        // the idle timeout (rsipstack's read loop cannot be cancelled from
                        // here).
                        let conn = conn.clone();
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(REPLY_TIMEOUT, conn.close()).await;
                        });
                        return None;
                    }
                }
            }
            TransportEvent::Closed(conn) => {
                if let (Some((key, _)), Ok(mut t)) = (self.inbound(conn), self.tcp.lock()) {
                    t.closed(&key);
                }
            }
            _ => {}
        }
        Some(event)
    }
}

/// `505 Version Not Supported` to `req`, in SIP/2.0 (RFC 3261 §21.5.7).
fn version_not_supported(req: &rsipstack::sip::Request, user_agent: &str) -> rsipstack::sip::Response {
    let mut headers = req.headers.clone();
    headers.retain(|h| {
        matches!(h, Header::Via(_) | Header::CallId(_) | Header::From(_) | Header::To(_) | Header::CSeq(_))
    });
    headers.push(Header::ContentLength(0u32.into()));
    headers.push(Header::UserAgent(user_agent.to_string().into()));
    rsipstack::sip::Response {
        status_code: StatusCode::from(505),
        wire_reason: None,
        version: Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// Requests that arrive for us: in-dialog ones (BYE from the callee, re-INVITE, REFER,
/// OPTIONS) go to their dialog; out-of-dialog OPTIONS get 200 (trunks probe us too);
/// anything else gets a clear final response. Malformed messages never get this far: the
/// stack's parser drops them.
async fn serve_incoming(dialogs: Arc<DialogLayer>, mut incoming: TransactionReceiver, registry: Option<Arc<Registry>>) {
    while let Some(mut tx) = incoming.recv().await {
        if let Some(mut d) = dialogs.match_dialog(&tx) {
            tokio::spawn(async move {
                let _ = d.handle(&mut tx).await;
            });
            continue;
        }
        if let (Method::Register, Some(reg)) = (&tx.original.method, &registry) {
            let reg = reg.clone();
            tokio::spawn(async move {
                let (status, headers) = register_reply(&reg, &tx.original);
                let _ = tx.reply_with(status, headers, None).await;
            });
            continue;
        }
        let status = match tx.original.method {
            Method::Options => StatusCode::OK,
            Method::Ack => continue,
            // Outbound only for now: inbound calls are politely refused.
            Method::Invite => StatusCode::TemporarilyUnavailable,
            Method::Bye | Method::Cancel => StatusCode::CallTransactionDoesNotExist,
            _ => StatusCode::MethodNotAllowed,
        };
        tokio::spawn(async move {
            let _ = tx.reply(status).await;
        });
    }
}

/// Answers one REGISTER through the registrar: the status and the headers to add.
fn register_reply(reg: &Registry, req: &rsipstack::sip::Request) -> (StatusCode, Vec<Header>) {
    let uri = req.uri.to_string();
    let parsed = Register::parse(&uri, req.headers.iter().map(|h| (h.name(), h.value())));
    let other = |n: &str, v: String| Header::Other(n.into(), v);
    match parsed.map(|r| reg.register(&r)) {
        Err(why) | Ok(Reply::Bad(why)) => {
            (StatusCode::BadRequest, vec![other("Warning", format!("399 waihu \"{why}\""))])
        }
        Ok(Reply::Challenge(c)) => (StatusCode::Unauthorized, vec![other("WWW-Authenticate", c)]),
        Ok(Reply::Forbidden) => (StatusCode::Forbidden, vec![]),
        Ok(Reply::IntervalTooBrief(min)) => (StatusCode::IntervalTooBrief, vec![other("Min-Expires", min.to_string())]),
        Ok(Reply::Ok(bindings)) => (
            StatusCode::OK,
            bindings.into_iter().map(|(c, secs)| other("Contact", format!("{c};expires={secs}"))).collect(),
        ),
    }
}

/// An INVITE we sent: its Call-ID, and where its commands go.
#[derive(Debug, Clone)]
pub struct OutboundCall {
    pub call_id: String,
    commands: mpsc::UnboundedSender<SipCommand>,
}

impl OutboundCall {
    /// Hands the dialog a command. Fails only when the call's SIP side is already gone.
    pub fn send(&self, cmd: SipCommand) -> Result<(), SipError> {
        self.commands.send(cmd).map_err(|_| SipError::Stack("the call's dialog has ended".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::{session_expires, sipfrag_status};

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying"), Some(100));
        assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n"), Some(486));
        assert_eq!(sipfrag_status(b""), None);
        assert_eq!(sipfrag_status(b"hello 200"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 999 Nope"), None);
    }

    #[test]
    fn session_expires_values() {
        assert_eq!(session_expires("1800;refresher=uac"), Some((1800, true)));
        assert_eq!(session_expires("90; refresher=UAS"), Some((90, false)));
        assert_eq!(session_expires("600"), Some((600, false)));
        assert_eq!(session_expires("0;refresher=uac"), None);
        assert_eq!(session_expires("soon"), None);
    }
}
