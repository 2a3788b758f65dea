//! The shard's run loop and command handling: sessions opened, changed, bridged and
//! closed on the control plane's word.
#![allow(clippy::disallowed_methods)]

use super::*;

pub(super) async fn run(
    cfg: ShardConfig,
    pool: Arc<Mutex<PortPool>>,
    commands: flume::Receiver<Command>,
    events: flume::Sender<Event>,
) {
    let sessions: Sessions = Rc::new(RefCell::new(FastMap::default()));
    let poller = match Poller::new() {
        Ok(p) => Rc::new(RefCell::new(p)),
        Err(e) => {
            let _ = events.send(Event::ShardError { error: format!("epoll: {e}") });
            return;
        }
    };
    let shared = match cfg.shared_port.map(|port| open_shared(&cfg, port, &poller.borrow())).transpose() {
        Ok(s) => s.map(Rc::new),
        Err(e) => {
            let _ = events.send(Event::ShardError { error: format!("shared port: {e}") });
            return;
        }
    };
    let ticker = glommio::spawn_local(tick(cfg.clone(), sessions.clone(), events.clone()));
    let pacer = glommio::spawn_local(pace(cfg.clone(), sessions.clone(), events.clone()));
    let receiver = glommio::spawn_local(receive(
        poller.clone(),
        sessions.clone(),
        events.clone(),
        shared.clone(),
        commands.clone(),
    ));
    let mut handled: u32 = 0;
    while let Ok(cmd) = commands.recv_async().await {
        if let Command::Shutdown = cmd {
            break;
        }
        handle(&cfg, &pool, &poller, shared.as_deref(), &sessions, &events, cmd);
        // A burst of commands (thousands of StartAmd at once) must not hold up the media:
        // let the receive and pacer tasks run every few commands.
        handled = handled.wrapping_add(1);
        if handled % 32 == 0 {
            glommio::executor().yield_now().await;
        }
    }
    drop(ticker);
    drop(pacer);
    drop(receiver);
    sessions.borrow_mut().clear();
}

pub(super) fn handle(
    cfg: &ShardConfig,
    pool: &Mutex<PortPool>,
    poller: &RefCell<Poller>,
    shared: Option<&SharedPort>,
    sessions: &Sessions,
    events: &flume::Sender<Event>,
    cmd: Command,
) {
    let fail = |call: CallId, e: WorkerError| {
        let ev = Event::Error { call, error: e.to_string() };
        match sessions.borrow().get(&call) {
            Some(s) => s.state.borrow().emit(events, ev),
            None => {
                let _ = events.send(ev);
            }
        }
    };
    let r = match cmd {
        Command::Allocate { call, payloads, socket, port, owner, reply } => {
            let owner = owner.map(|tx| Owner { tx, dropped: Cell::new(0) });
            let r = match (socket, shared) {
                (Some(socket), _) => {
                    let r =
                        allocate(cfg, Some(&poller.borrow()), sessions, call, payloads, Rc::new(socket), port, owner);
                    if r.is_err() {
                        release(pool, port);
                    }
                    r
                }
                (None, Some(sp)) => allocate(cfg, None, sessions, call, payloads, sp.socket.clone(), 0, owner),
                (None, None) => Err(WorkerError::Io("no socket given and no shared port".into())),
            };
            let _ = reply.send(r);
            Ok(())
        }
        Command::SetRemote { call, remote, symmetric } => with_session(sessions, call, |s| {
            if let Some(sp) = shared {
                sp.demux.borrow_mut().expect(call, remote, symmetric);
            }
            s.source.signal(remote, if symmetric { Latch::Nat } else { Latch::Strict });
            s.remote = s.source.remote();
            if s.sender.is_none() {
                s.sender = Some(make_sender(call, &s.media)?);
            }
            Ok(())
        }),
        Command::SetRtcpMux { call, mux } => with_session(sessions, call, |s| {
            s.rtcp_mux = mux;
            Ok(())
        }),
        Command::SetPayloads { call, payloads } => with_session(sessions, call, |s| {
            s.media.set_payloads(payloads).map_err(|e| WorkerError::Session(e.to_string()))?;
            if s.sender.is_some() {
                s.sender = Some(make_sender(call, &s.media)?);
            }
            Ok(())
        }),
        Command::StartAmd { call, params, run } => with_session(sessions, call, |s| {
            s.media.start_amd(params, run);
            Ok(())
        }),
        Command::StopAmd { call } => with_session(sessions, call, |s| {
            s.media.stop_amd();
            Ok(())
        }),
        Command::DetectInbandDtmf { call, on } => with_session(sessions, call, |s| {
            s.media.detect_inband_dtmf(on);
            Ok(())
        }),
        Command::Play { call, audio, looped } => with_session(sessions, call, |s| {
            s.play = Some(Playback { audio, pos: 0, looped });
            if let Some(tx) = s.sender.as_mut() {
                tx.mark();
            }
            Ok(())
        }),
        Command::StopPlay { call } => with_session(sessions, call, |s| {
            s.play = None;
            Ok(())
        }),
        Command::Announce { call, audio } => with_session(sessions, call, |s| {
            s.announce = Some(Playback { audio, pos: 0, looped: false });
            Ok(())
        }),
        Command::Keepalive { call, mode } => with_session(sessions, call, |s| {
            s.keepalive = mode;
            s.next_keepalive = Instant::now();
            Ok(())
        }),
        Command::Bridge { a, b } => bridge(sessions, &mut poller.borrow_mut(), a, b),
        Command::Export { call, reply } => {
            let leg = export(sessions, call);
            let failed = leg.as_ref().err().cloned();
            let _ = reply.send(leg);
            failed.map_or(Ok(()), Err)
        }
        Command::BridgeRemote { call, peer } => bridge_remote(sessions, &mut poller.borrow_mut(), call, peer),
        Command::Mix { mix: id, legs } => mix(sessions, &mut poller.borrow_mut(), id, legs),
        Command::EndMix { mix } => {
            end_mix(sessions, mix);
            Ok(())
        }
        Command::Unbridge { call } => {
            unbridge(sessions, &mut poller.borrow_mut(), call);
            Ok(())
        }
        Command::Hold { call, music } => with_session(sessions, call, |s| {
            s.held = true;
            s.play = Some(Playback { audio: music, pos: 0, looped: true });
            Ok(())
        }),
        Command::Resume { call } => with_session(sessions, call, |s| {
            s.held = false;
            s.play = None;
            Ok(())
        }),
        Command::StartRecording { call } => with_session(sessions, call, |s| {
            s.recording = Some(Recording::default());
            Ok(())
        }),
        Command::StopRecording { call } => {
            let map = sessions.borrow();
            let st = map.get(&call).map(|s| &s.state);
            let rec = st.map(|s| s.borrow_mut().recording.take());
            match (rec, st) {
                (Some(Some(r)), Some(st)) => {
                    st.borrow().emit(events, Event::Recording { call, wav: r.into_wav() });
                    Ok(())
                }
                (Some(None), _) => Err(WorkerError::Session(format!("call {call} is not recording"))),
                _ => Err(WorkerError::NoSession(call)),
            }
        }
        Command::Close { call } => {
            unbridge(sessions, &mut poller.borrow_mut(), call);
            let removed = sessions.borrow_mut().remove(&call);
            match removed {
                Some(s) => {
                    match shared {
                        Some(sp) if s.port == 0 => sp.demux.borrow_mut().forget(call),
                        _ => poller.borrow_mut().remove(s.fd),
                    }
                    let mut st = s.state.borrow_mut();
                    if let Some(r) = st.recording.take() {
                        st.emit(events, Event::Recording { call, wav: r.into_wav() });
                    }
                    if s.port != 0 {
                        release(pool, s.port);
                    }
                    st.emit(events, Event::Closed { call, stats: leg_stats(&st) });
                    Ok(())
                }
                None => Err(WorkerError::NoSession(call)),
            }
        }
        Command::Shutdown => Ok(()),
    };
    if let Err(e) = r {
        let call = match &e {
            WorkerError::NoSession(c) | WorkerError::Exists(c) => *c,
            _ => 0,
        };
        fail(call, e);
    }
}

/// The leg's statistics: the session's, plus the strangers its source filter dropped.
pub(super) fn leg_stats(st: &SessionState) -> SessionStats {
    let events_dropped = st.owner.as_ref().map_or(0, |o| o.dropped.get());
    SessionStats { strangers: st.source.strangers(), events_dropped, ..st.media.stats() }
}

/// A sender for the session's first negotiated codec, with a per-stream SSRC, first
/// sequence number and timestamp (RFC 3550 §5.1).
pub(super) fn make_sender(call: CallId, media: &MediaSession) -> Result<RtpSender, WorkerError> {
    let (codec, pt) = media.send_codec().ok_or(WorkerError::Session("no audio codec".into()))?;
    let seed = call.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    RtpSender::new(codec, pt, (seed >> 32) as u32, seed as u16, (seed >> 16) as u32)
        .map_err(|e| WorkerError::Session(e.to_string()))
}

pub(super) fn with_session(
    sessions: &Sessions,
    call: CallId,
    f: impl FnOnce(&mut SessionState) -> Result<(), WorkerError>,
) -> Result<(), WorkerError> {
    match sessions.borrow().get(&call) {
        Some(s) => f(&mut s.state.borrow_mut()),
        None => Err(WorkerError::NoSession(call)),
    }
}

/// Bridges two legs; their sockets (per-call ports) join the poller's hot set.
pub(super) fn bridge(sessions: &Sessions, poller: &mut Poller, a: CallId, b: CallId) -> Result<(), WorkerError> {
    if a == b {
        return Err(WorkerError::Session("cannot bridge a leg to itself".into()));
    }
    {
        let map = sessions.borrow();
        for c in [a, b] {
            if !map.contains_key(&c) {
                return Err(WorkerError::NoSession(c));
            }
        }
    }
    unbridge(sessions, poller, a);
    unbridge(sessions, poller, b);
    let map = sessions.borrow();
    for (me, peer) in [(a, b), (b, a)] {
        if let Some(s) = map.get(&me) {
            let mut st = s.state.borrow_mut();
            st.bridge = Some(peer);
            st.announce_relay = true;
            drop(st);
            if s.port != 0 {
                poller.promote(s.fd, me);
            }
        }
    }
    Ok(())
}

/// Leg `call` as another shard will reach it.
pub(super) fn export(sessions: &Sessions, call: CallId) -> Result<RemoteLeg, WorkerError> {
    let map = sessions.borrow();
    let s = map.get(&call).ok_or(WorkerError::NoSession(call))?;
    let st = s.state.borrow();
    let remote = st.remote.ok_or_else(|| WorkerError::Session(format!("call {call} has no far end yet")))?;
    let (codec, payload_type) = st.media.send_codec().ok_or(WorkerError::Session("no audio codec".into()))?;
    let socket = s.socket.try_clone().map_err(|e| WorkerError::Io(e.to_string()))?;
    Ok(RemoteLeg { call, socket: Arc::new(socket), remote, codec, payload_type })
}

/// Connects `call` to a leg on another shard: what `call` hears goes out of the peer's
/// socket. The leg joins the hot set, as a local bridge's legs do.
pub(super) fn bridge_remote(
    sessions: &Sessions,
    poller: &mut Poller,
    call: CallId,
    peer: RemoteLeg,
) -> Result<(), WorkerError> {
    if !sessions.borrow().contains_key(&call) {
        return Err(WorkerError::NoSession(call));
    }
    unbridge(sessions, poller, call);
    let map = sessions.borrow();
    let s = map.get(&call).ok_or(WorkerError::NoSession(call))?;
    let seed = (call ^ peer.call).wrapping_add(7).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let sender = RtpSender::new(peer.codec, peer.payload_type, (seed >> 32) as u32, seed as u16, (seed >> 16) as u32)
        .map_err(|e| WorkerError::Session(e.to_string()))?;
    let mut st = s.state.borrow_mut();
    st.bridge = Some(peer.call);
    st.remote_peer = Some(RemotePeer { socket: peer.socket, remote: peer.remote, sender });
    st.announce_relay = true;
    if s.port != 0 {
        poller.promote(s.fd, call);
    }
    Ok(())
}

/// Puts `legs` in mix `id` (replacing what `id` was), each out of its bridge or other mix.
pub(super) fn mix(
    sessions: &Sessions,
    poller: &mut Poller,
    id: CallId,
    legs: Vec<(CallId, u8)>,
) -> Result<(), WorkerError> {
    let mixer = crate::mixer::Mixer::new(&legs).map_err(|e| WorkerError::Session(e.to_string()))?;
    if let Some(&(missing, _)) = legs.iter().find(|(c, _)| !sessions.borrow().contains_key(c)) {
        return Err(WorkerError::NoSession(missing));
    }
    end_mix(sessions, id);
    for &(c, _) in &legs {
        unbridge(sessions, poller, c);
    }
    let mixer = Rc::new(RefCell::new(mixer));
    let map = sessions.borrow();
    for (index, (c, _)) in legs.iter().enumerate() {
        if let Some(s) = map.get(c) {
            s.state.borrow_mut().mix = Some(MixSlot { id, mixer: mixer.clone(), index });
        }
    }
    Ok(())
}

/// Takes every leg out of mix `id` (a mix nobody is in is gone).
pub(super) fn end_mix(sessions: &Sessions, id: CallId) {
    for s in sessions.borrow().values() {
        let mut st = s.state.borrow_mut();
        if st.mix.as_ref().is_some_and(|m| m.id == id) {
            st.mix = None;
        }
    }
}

pub(super) fn unbridge(sessions: &Sessions, poller: &mut Poller, call: CallId) {
    let map = sessions.borrow();
    let me = map.get(&call);
    if let Some(s) = me {
        let mut st = s.state.borrow_mut();
        // A cross-shard bridge: dropping the peer's socket closes this shard's duplicate.
        st.remote_peer = None;
        // Out of its mix: the others stop hearing it.
        if let Some(slot) = st.mix.take() {
            slot.mixer.borrow_mut().remove(slot.index);
        }
    }
    let peer = me.and_then(|s| s.state.borrow_mut().bridge.take());
    let peer = peer.and_then(|p| map.get(&p));
    if let Some(p) = peer {
        p.state.borrow_mut().bridge = None;
    }
    for s in [me, peer].into_iter().flatten() {
        if s.port != 0 {
            poller.demote(s.fd);
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Registers a bound socket as session `call`. On error the caller gives the port back.
/// `poller` is None for the shared socket, which is registered once for the whole shard.
pub(super) fn allocate(
    cfg: &ShardConfig,
    poller: Option<&Poller>,
    sessions: &Sessions,
    call: CallId,
    payloads: PayloadMap,
    socket: Rc<UdpSocket>,
    port: u16,
    owner: Option<Owner>,
) -> Result<SocketAddr, WorkerError> {
    if sessions.borrow().contains_key(&call) {
        return Err(WorkerError::Exists(call));
    }
    let media = MediaSession::new(payloads).map_err(|e| WorkerError::Session(e.to_string()))?;
    let local = socket.local_addr().map_err(|e| WorkerError::Io(e.to_string()))?;
    if let Some(poller) = poller {
        poller.add(socket.as_raw_fd(), call).map_err(|e| WorkerError::Io(e.to_string()))?;
    }
    let state = Rc::new(RefCell::new(SessionState {
        media,
        sender: None,
        remote: None,
        source: SourceFilter::default(),
        rtcp_mux: true,
        first_packet: None,
        last_packet: None,
        timeout_reported: false,
        origin: Instant::now(),
        bridge: None,
        remote_peer: None,
        announce_relay: false,
        mix: None,
        announce: None,
        held: false,
        play: None,
        recording: None,
        next_rtcp: Instant::now() + leg::rtcp_phase(cfg.rtcp_interval, call),
        owner,
        keepalive: Keepalive::Off,
        next_keepalive: Instant::now(),
    }));
    let fd = socket.as_raw_fd();
    sessions.borrow_mut().insert(call, Session { state, socket, fd, port });
    Ok(local)
}
