//! The SIP user agent: a thin adapter over rsipstack. This is the only module that sees
//! rsipstack types; callers get [`SipAgent`], [`OutboundCall`] and [`SipEvent`], and feed
//! the events to the pure [`crate::call::Call`].
//!
//! Built around rsipstack 0.7.14's known gaps (../shared/notes/sip-stack.md): our own
//! Call-ID domain on every call, `remove_dialog` once each dialog ends, and CANCEL through
//! the early dialog handle (`InviteDialog::cancel`) rather than a lookup by early id.

use crate::call::Failure;
use crate::sdp::{self, LocalMedia, Negotiated};
use crate::trunk::{Transport, TrunkConfig};
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, HostWithPort, Method, StatusCode, Uri};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use rsipstack::EndpointBuilder;
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
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tcp: false,
            user_agent: concat!("waihu/", env!("CARGO_PKG_VERSION")).into(),
            call_id_domain: "waihu.invalid".into(),
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
    /// address, a session-timer refresh). Already answered from the call's local media;
    /// the media plane should follow the negotiated result.
    Reoffer(Negotiated),
    /// The far end asked us to call someone else (REFER). Declined with 603: an outbound
    /// dialer that dials whatever a callee names is a toll-fraud hole.
    ReferDeclined { target: String },
    /// The INVITE got no final response (`Failure::Timeout`) or could not be sent, or the
    /// stack failed (`Failure::Local`). Never a SIP answer: the call records it as such.
    Failed { failure: Failure, detail: String },
}

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
        let endpoint = EndpointBuilder::new()
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
        tokio::spawn(serve_incoming(dialogs.clone(), incoming));
        Ok(SipAgent {
            inner: Arc::new(Inner {
                endpoint: endpoint.inner.clone(),
                dialogs,
                cancel,
                local,
                cfg,
                seq: AtomicU64::new(1),
            }),
        })
    }

    /// Our SIP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Dialogs the stack still holds (0 once every call has ended cleanly).
    pub fn dialog_count(&self) -> usize {
        self.inner.dialogs.len()
    }

    /// Sends an INVITE with the offer for `local` to `target` through `trunk`.
    pub fn invite(&self, target: &str, trunk: &TrunkConfig, local: &LocalMedia) -> Result<OutboundCall, SipError> {
        let sdp = sdp::offer(local);
        let media = Arc::new(std::sync::Mutex::new(local.clone()));
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
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let call_id = format!(
            "{:x}-{n}@{}",
            std::process::id() as u64 * 0x1_0000_0000 + local.port() as u64,
            self.inner.cfg.call_id_domain
        );
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
            offer: Some(sdp.into_bytes()),
            contact,
            credential,
            headers: (!headers.is_empty()).then_some(headers),
            call_id: Some(call_id.clone()),
            ..Default::default()
        };
        let (state_tx, state_rx) = self.inner.dialogs.new_dialog_state_channel();
        let (dialog, handle) = self.inner.dialogs.do_invite_async(opt, state_tx).map_err(stack)?;
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        tokio::spawn(follow(self.inner.dialogs.clone(), dialog.clone(), state_rx, handle, ev_tx, media.clone()));
        Ok(OutboundCall { call_id, dialog, dialogs: self.inner.dialogs.clone(), events: ev_rx, local: media })
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

/// Turns the stack's dialog states and the INVITE's outcome into [`SipEvent`]s, and
/// removes the dialog from the stack's registry once it has ended.
async fn follow(
    dialogs: Arc<DialogLayer>,
    dialog: InviteDialog,
    mut states: rsipstack::dialog::dialog::DialogStateReceiver,
    handle: rsipstack::platform::JoinHandle<rsipstack::dialog::invitation::InviteAsyncResult>,
    events: mpsc::UnboundedSender<SipEvent>,
    local: Arc<std::sync::Mutex<LocalMedia>>,
) {
    let body = |b: &[u8]| (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned());
    let mut handle = Box::pin(handle);
    let mut answered = false;
    let mut final_seen = false;
    loop {
        tokio::select! {
            biased;
            state = states.recv() => match state {
                Some(DialogState::Early(_, resp)) => {
                    let status = resp.status_code.code();
                    if status > 100 {
                        let _ = events.send(SipEvent::Provisional { status, sdp: body(&resp.body) });
                    }
                }
                Some(DialogState::Terminated(id, reason)) => {
                    if answered && matches!(reason, TerminatedReason::UasBye) {
                        let _ = events.send(SipEvent::Bye);
                    }
                    dialogs.remove_dialog(&id);
                    if final_seen {
                        break;
                    }
                }
                Some(DialogState::Updated(_, req, handle)) => {
                    // re-INVITE or UPDATE from the far end: answer its offer from our media.
                    let media = local.lock().map(|l| l.clone()).ok();
                    let offer = body(&req.body);
                    let reply = match (media, offer) {
                        (Some(m), Some(offer)) => match sdp::answer(&offer, &m) {
                            Ok((answer, n)) => {
                                let _ = events.send(SipEvent::Reoffer(n));
                                Some(answer)
                            }
                            Err(_) => None,
                        },
                        // No offer: ours goes in the 200 (the ACK brings their answer).
                        (Some(m), None) => Some(sdp::offer(&m)),
                        (None, _) => None,
                    };
                    tokio::spawn(async move {
                        let _ = match reply {
                            Some(sdp) => {
                                let ct = Header::ContentType("application/sdp".into());
                                handle.respond(StatusCode::OK, Some(vec![ct]), Some(sdp.into_bytes())).await
                            }
                            None => handle.reply(StatusCode::NotAcceptableHere).await,
                        };
                    });
                }
                Some(DialogState::Refer(_, req, handle)) => {
                    let target = req
                        .headers
                        .iter()
                        .find(|h| h.name().eq_ignore_ascii_case("Refer-To"))
                        .map(|h| h.value().to_string())
                        .unwrap_or_default();
                    let _ = events.send(SipEvent::ReferDeclined { target });
                    tokio::spawn(async move {
                        let _ = handle.reply(StatusCode::Decline).await;
                    });
                }
                // NOTIFY (progress of a REFER we sent), INFO, in-dialog OPTIONS: 200.
                Some(DialogState::Notify(_, _, handle) | DialogState::Info(_, _, handle) | DialogState::Options(_, _, handle)) => {
                    tokio::spawn(async move {
                        let _ = handle.reply(StatusCode::OK).await;
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
                        let _ = events.send(SipEvent::Final { status, sdp: body(&resp.body) });
                        if answered {
                            let se = resp.headers.iter().find(|h| {
                                h.name().eq_ignore_ascii_case("Session-Expires") || h.name().eq_ignore_ascii_case("x")
                            });
                            if let Some((secs, we_refresh)) = se.and_then(|h| session_expires(h.value())) {
                                let _ = events.send(SipEvent::SessionTimer { secs, we_refresh });
                            }
                        }
                        if !answered {
                            break;
                        }
                    }
                    Ok(Ok((_, None))) => {
                        let detail = "the INVITE ended without a final response".into();
                        let _ = events.send(SipEvent::Failed { failure: Failure::Timeout, detail });
                        break;
                    }
                    Ok(Err(e)) => {
                        let _ = events.send(SipEvent::Failed { failure: Failure::Local, detail: e.to_string() });
                        break;
                    }
                    Err(e) => {
                        let detail = format!("INVITE task: {e}");
                        let _ = events.send(SipEvent::Failed { failure: Failure::Local, detail });
                        break;
                    }
                }
            }
        }
    }
    dialogs.remove_dialog(&dialog.id());
}

/// `Session-Expires: 1800;refresher=uac` → (1800, true). A missing refresher means the
/// answerer (UAS) refreshes (RFC 4028 §7.2 leaves it to the UAS, which names itself).
fn session_expires(v: &str) -> Option<(u32, bool)> {
    let mut parts = v.split(';');
    let secs: u32 = parts.next()?.trim().parse().ok()?;
    let uac = parts.any(|p| p.trim().eq_ignore_ascii_case("refresher=uac"));
    (secs > 0).then_some((secs, uac))
}

/// Requests that arrive for us: in-dialog ones (BYE from the callee, re-INVITE, REFER,
/// OPTIONS) go to their dialog; out-of-dialog OPTIONS get 200 (trunks probe us too);
/// anything else gets a clear final response. Malformed messages never get this far: the
/// stack's parser drops them.
async fn serve_incoming(dialogs: Arc<DialogLayer>, mut incoming: TransactionReceiver) {
    while let Some(mut tx) = incoming.recv().await {
        if let Some(mut d) = dialogs.match_dialog(&tx) {
            tokio::spawn(async move {
                let _ = d.handle(&mut tx).await;
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

/// An INVITE we sent and the dialog it made.
pub struct OutboundCall {
    pub call_id: String,
    dialog: InviteDialog,
    dialogs: Arc<DialogLayer>,
    events: mpsc::UnboundedReceiver<SipEvent>,
    /// Our media as of the last offer/answer, used to answer the far end's re-offers.
    local: Arc<std::sync::Mutex<LocalMedia>>,
}

impl std::fmt::Debug for OutboundCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundCall").field("call_id", &self.call_id).finish()
    }
}

impl OutboundCall {
    /// The next thing the far end did; None once nothing more can happen.
    pub async fn next_event(&mut self) -> Option<SipEvent> {
        self.events.recv().await
    }

    /// Gives up before the answer: CANCEL. The INVITE then ends with 487 (or a 200 that
    /// raced the CANCEL, which the stack ends with a BYE).
    pub async fn cancel(&self) -> Result<(), SipError> {
        self.dialog.cancel().await.map_err(stack)
    }

    /// Hangs up an answered call.
    pub async fn bye(&self) -> Result<(), SipError> {
        let r = self.dialog.bye().await.map_err(stack);
        self.dialogs.remove_dialog(&self.dialog.id());
        r
    }

    /// re-INVITE with a new offer for `local` (hold: direction sendonly; resume:
    /// sendrecv; bump `local.version`). Returns the final status and, on 2xx, what the
    /// answer negotiated.
    pub async fn reinvite(&self, local: &LocalMedia) -> Result<(u16, Option<Negotiated>), SipError> {
        let ct = Header::ContentType("application/sdp".into());
        let offer = sdp::offer(local).into_bytes();
        match self.dialog.reinvite(Some(vec![ct]), Some(offer)).await.map_err(stack)? {
            Some(r) => {
                let status = r.status_code.code();
                if !(200..300).contains(&status) {
                    return Ok((status, None));
                }
                if let Ok(mut l) = self.local.lock() {
                    *l = local.clone();
                }
                let answer = String::from_utf8_lossy(&r.body);
                Ok((status, sdp::accept_answer(&answer, local).ok()))
            }
            None => Err(SipError::Stack("the call is not answered".into())),
        }
    }

    /// Session refresh (RFC 4028, we are the refresher): a re-INVITE with our current media
    /// and the Session-Expires we were given. Returns the final status.
    pub async fn refresh_session(&self, local: &LocalMedia, secs: u32) -> Result<u16, SipError> {
        let headers = vec![
            Header::ContentType("application/sdp".into()),
            Header::Other("Session-Expires".into(), format!("{secs};refresher=uac")),
            Header::Other("Supported".into(), "timer".into()),
        ];
        let offer = sdp::offer(local).into_bytes();
        match self.dialog.reinvite(Some(headers), Some(offer)).await.map_err(stack)? {
            Some(r) => Ok(r.status_code.code()),
            None => Err(SipError::Stack("the call is not answered".into())),
        }
    }

    /// Blind transfer: REFER the far end to `target`. Returns the REFER's final status
    /// (202 when accepted).
    pub async fn refer(&self, target: &str) -> Result<u16, SipError> {
        let uri = Uri::try_from(target).map_err(|e| SipError::BadUri { uri: target.into(), error: e.to_string() })?;
        match self.dialog.refer(uri, None, None).await.map_err(stack)? {
            Some(r) => Ok(r.status_code.code()),
            None => Err(SipError::Stack("the call is not answered".into())),
        }
    }
}

impl Drop for OutboundCall {
    fn drop(&mut self) {
        self.dialogs.remove_dialog(&self.dialog.id());
    }
}

#[cfg(test)]
mod tests {
    use super::session_expires;

    #[test]
    fn session_expires_values() {
        assert_eq!(session_expires("1800;refresher=uac"), Some((1800, true)));
        assert_eq!(session_expires("90; refresher=UAS"), Some((90, false)));
        assert_eq!(session_expires("600"), Some((600, false)));
        assert_eq!(session_expires("0;refresher=uac"), None);
        assert_eq!(session_expires("soon"), None);
    }
}
