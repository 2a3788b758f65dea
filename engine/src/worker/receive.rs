//! The receive path: draining ready sockets with recvmmsg, the source check, the
//! session, and relaying to a bridged peer. The per-packet hot path.
#![allow(clippy::disallowed_methods)]

use super::*;

/// Drains every ready session socket with recvmmsg, then yields; blocks in epoll (at
/// most [`IDLE_BLOCK_MS`]) when nothing is ready. A pass over up to 256 ready sockets
/// takes about 1.5 ms at full load, so bridged legs (the poller's
/// hot set) are served first and again every [`HOT_EVERY`] sockets: relayed audio waits
/// for at most a few sockets' work, not for the whole pass.
pub(super) async fn receive(
    poller: Rc<RefCell<Poller>>,
    sessions: Sessions,
    events: flume::Sender<Event>,
    shared: Option<Rc<SharedPort>>,
    commands: flume::Receiver<Command>,
) {
    let mut batch = Batch::new();
    // Packets for bridged peers, built while sessions are borrowed, sent after.
    let mut outgoing: Vec<Vec<u8>> = Vec::new();
    let mut ready: Vec<u64> = Vec::with_capacity(256);
    let mut hot: Vec<u64> = Vec::with_capacity(256);
    // One timer, re-armed: a fresh `sleep` per idle wake-up would allocate.
    let mut timer = Timer::new(Duration::from_micros(1));
    let mut rx = Receiver { sessions: &sessions, events: &events, shared: shared.as_deref(), batch: &mut batch };
    let mut suspended = Instant::now();
    loop {
        ready.clear();
        ready.extend(poller.borrow_mut().ready().iter().map(|e| e.u64));
        if ready.is_empty() {
            // Sleep in epoll itself: the kernel wakes the thread as a packet lands. A glommio
            // timer here (0.5 ms) woke up late by a millisecond or more in this VM, and every
            // packet arriving meanwhile waited for it (docs/benchmarks.md).
            ready.extend(poller.borrow_mut().ready_within(IDLE_BLOCK_MS).iter().map(|e| e.u64));
        }
        if !commands.is_empty() {
            // Commands sent before these packets (start AMD, bridge, ...) apply to them.
            suspend(&mut timer).await;
            suspended = Instant::now();
        }
        let audit = ShardCode::enter();
        let serve_hot = poller.borrow().has_hot();
        for (i, &call) in ready.iter().enumerate() {
            if serve_hot && i % HOT_EVERY == 0 {
                hot.clear();
                hot.extend(poller.borrow_mut().hot_ready().iter().map(|e| e.u64));
                for &h in &hot {
                    rx.drain(h, &mut outgoing);
                }
            }
            rx.drain(call, &mut outgoing);
        }
        drop(audit);
        // glommio polls its reactor (commands from other threads, the pacer's and the
        // ticker's timers) only when the running queue empties or its preemption timer
        // fires. So at least every millisecond, and whenever a whole idle block passed,
        // this task suspends on an already-due timer; a plain yield would keep it running
        // alone.
        if ready.is_empty() || suspended.elapsed() >= SUSPEND_EVERY {
            suspend(&mut timer).await;
            suspended = Instant::now();
        } else {
            glommio::yield_if_needed().await;
        }
    }
}

/// Lets the executor poll its reactor and run the shard's other tasks, without sleeping.
pub(super) async fn suspend(timer: &mut Timer) {
    timer.reset(Duration::from_micros(1));
    timer.await;
}

/// The longest frame an announcement is mixed into (60 ms at 8 kHz); longer ones are cut.
const ANNOUNCE_FRAME: usize = 480;

/// Longest the receive loop runs before it lets the shard's other tasks in.
pub(super) const SUSPEND_EVERY: Duration = Duration::from_millis(1);

/// Longest an idle receive loop blocks in epoll before the shard's other tasks run.
pub(super) const IDLE_BLOCK_MS: i32 = 1;

/// Sockets of a pass between two looks at the hot set (about 5 µs of work each at full
/// load, so bridged legs are looked at every ~0.1 ms).
pub(super) const HOT_EVERY: usize = 8;

/// What the receive loop needs to drain one ready socket.
pub(super) struct Receiver<'a> {
    sessions: &'a Sessions,
    events: &'a flume::Sender<Event>,
    shared: Option<&'a SharedPort>,
    batch: &'a mut Batch,
}

impl Receiver<'_> {
    /// Reads everything waiting on the socket tagged `call` (or the shared socket).
    /// A socket drained moments ago (a hot one, met again in the pass) just has nothing.
    fn drain(&mut self, call: CallId, outgoing: &mut Vec<Vec<u8>>) {
        if let (SHARED_TOKEN, Some(sp)) = (call, self.shared) {
            receive_shared(sp, self.batch, self.sessions, self.events, outgoing);
            return;
        }
        let Some((state, fd)) = self.sessions.borrow().get(&call).map(|s| (s.state.clone(), s.fd)) else {
            return;
        };
        loop {
            let n = self.batch.recv(fd, batch::SESSION_BATCH);
            let now = Instant::now();
            for i in 0..n {
                let (d, from) = self.batch.get(i);
                let Some(from) = from else { continue };
                on_datagram(call, &state, self.sessions, self.events, d, from, now, outgoing, None);
            }
            if n < batch::SESSION_BATCH {
                break;
            }
        }
    }
}

/// Drains the shared socket, routing each datagram to its session by source and SSRC.
/// Datagrams no session is waiting for are dropped.
pub(super) fn receive_shared(
    sp: &SharedPort,
    batch: &mut Batch,
    sessions: &Sessions,
    events: &flume::Sender<Event>,
    outgoing: &mut Vec<Vec<u8>>,
) {
    let mut relays = sp.relays.borrow_mut();
    loop {
        let n = batch.recv(sp.socket.as_raw_fd(), batch::BATCH);
        let now = Instant::now();
        for i in 0..n {
            let (d, from) = batch.get(i);
            let (Some(from), Some(ssrc)) = (from, demux::ssrc_of(d)) else { continue };
            let Some(call) = sp.demux.borrow_mut().route(from, ssrc) else { continue };
            let Some(state) = sessions.borrow().get(&call).map(|s| s.state.clone()) else { continue };
            on_datagram(call, &state, sessions, events, d, from, now, outgoing, Some(&mut relays));
        }
        // Every relay of this batch leaves the shared socket in one sendmmsg.
        relays.flush(sp.socket.as_raw_fd());
        if n < batch::BATCH {
            break;
        }
    }
}

/// One datagram for session `call`: checks the source, runs the session, relays released
/// frames to a bridged peer and records them.
#[allow(clippy::too_many_arguments)]
pub(super) fn on_datagram(
    call: CallId,
    state: &Rc<RefCell<SessionState>>,
    sessions: &Sessions,
    events: &flume::Sender<Event>,
    d: &[u8],
    from: SocketAddr,
    now: Instant,
    outgoing: &mut Vec<Vec<u8>>,
    relays: Option<&mut batch::SendBatch>,
) {
    let mut used = 0;
    let peer = {
        let mut guard = state.borrow_mut();
        let s = &mut *guard;
        match s.source.admit(from) {
            Admit::Drop => return, // not the far end we negotiated with: counted, dropped
            Admit::Latched(to) => s.remote = Some(to),
            Admit::Accept => {}
        }
        if s.first_packet.is_none() {
            s.first_packet = Some(now);
            s.emit(events, Event::FirstPacket { call, from });
        }
        s.last_packet = Some(now);
        s.timeout_reported = false;
        let hears = leg::hears_me(s.held, s.bridge);
        let peer = hears.and_then(|p| sessions.borrow().get(&p).map(|p| (p.state.clone(), p.socket.clone())));
        // A peer on another shard: packed here, sent out of its socket below.
        let mut remote_peer = if hears.is_some() { s.remote_peer.as_mut() } else { None };
        let arrival = now.duration_since(s.origin).as_micros() as u64 * s.media.clock_rate() as u64 / 1_000_000;
        let payloads = s.media.payloads();
        let mut peer_state = peer.as_ref().map(|(p, _)| p.borrow_mut());
        let recording = &mut s.recording;
        // In a mix: what the leg says goes to the mixer (a held leg is heard by nobody).
        let mix = if s.held { None } else { s.mix.as_ref() };
        let announce = &mut s.announce;
        // Only a leg with an announcement needs the mixing buffer (none is zeroed per packet).
        let mut mixed: Option<[i16; ANNOUNCE_FRAME]> = None;
        let mut sink = |f: Frame<'_>| {
            if let Some(r) = recording.as_mut() {
                r.left.extend_from_slice(f.pcm);
            }
            if let Some(m) = mix {
                m.mixer.borrow_mut().push(m.index, f.pcm);
                return;
            }
            // An announcement over what is relayed: the frame goes out transcoded, mixed.
            let has_peer = remote_peer.is_some() || peer_state.is_some();
            let f = match announce.as_mut().filter(|_| has_peer) {
                Some(a) => {
                    let n = f.pcm.len().min(ANNOUNCE_FRAME);
                    let take = n.min(a.audio.len().saturating_sub(a.pos));
                    let mixed = mixed.get_or_insert([0; ANNOUNCE_FRAME]);
                    for (i, o) in mixed[..n].iter_mut().enumerate() {
                        let extra = if i < take { a.audio[a.pos + i] } else { 0 };
                        *o = f.pcm[i].saturating_add(extra);
                    }
                    a.pos += take;
                    if a.pos >= a.audio.len() {
                        *announce = None;
                    }
                    // No payload to relay as it came: encoded anew from the mixed audio.
                    Frame { pcm: &mixed[..n], lost: true, ..f }
                }
                None => f,
            };
            if let Some(rp) = remote_peer.as_deref_mut() {
                if used == outgoing.len() {
                    outgoing.push(Vec::with_capacity(1500));
                }
                let out = &mut outgoing[used];
                out.clear();
                if leg::relays_as_is(&payloads, f.payload_type, f.lost, rp.sender.codec()) {
                    rp.sender.pack(f.payload, f.pcm.len() as u32, out);
                } else if rp.sender.pack_pcm(f.pcm, out).is_err() {
                    return;
                }
                used += 1;
                return;
            }
            // A held peer hears its music, not us.
            let Some(p) = peer_state.as_deref_mut().filter(|p| !p.held) else { return };
            if let Some(r) = p.recording.as_mut() {
                r.right.extend_from_slice(f.pcm);
            }
            let (Some(tx), true) = (p.sender.as_mut(), p.remote.is_some()) else { return };
            if used == outgoing.len() {
                outgoing.push(Vec::with_capacity(1500));
            }
            let out = &mut outgoing[used];
            out.clear();
            if leg::relays_as_is(&payloads, f.payload_type, f.lost, tx.codec()) {
                tx.pack(f.payload, f.pcm.len() as u32, out);
            } else if tx.pack_pcm(f.pcm, out).is_err() {
                return;
            }
            used += 1;
        };
        // Malformed datagrams are counted in the session's stats; the shard goes on.
        let _ = s.media.on_datagram_with(d, arrival, &mut sink);
        let remote = remote_peer.is_some();
        if let Some(rp) = remote_peer {
            // Non-blocking, as below; the socket is the remote leg's own port.
            outgoing[..used].iter().for_each(|p| {
                let _ = rp.socket.send_to(p, rp.remote);
            });
        }
        while let Some(event) = s.media.poll_event() {
            s.emit(events, Event::Media { call, event });
        }
        if used > 0 && s.announce_relay {
            s.announce_relay = false;
            s.emit(events, Event::Relaying { call });
        }
        drop(peer_state);
        if remote {
            return;
        }
        peer
    };
    if let Some((peer_state, peer_socket)) = peer {
        let remote = peer_state.borrow().remote;
        if let Some(remote) = remote {
            match relays {
                // Shared port: queued, and sent with the rest of the batch.
                Some(r) => outgoing[..used].iter().for_each(|p| r.push(p, remote)),
                // Non-blocking: a full send buffer drops the packet, as the network would.
                None => outgoing[..used].iter().for_each(|p| {
                    let _ = peer_socket.send_to(p, remote);
                }),
            }
        }
    }
}
