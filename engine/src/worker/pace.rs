//! Timed work: paced playback (prompts, music on hold), RTCP reports, media timeouts and
//! periodic statistics.
#![allow(clippy::disallowed_methods)]

use super::*;

/// Plays prompts and music: one 20 ms packet per playing session per tick, on an
/// absolute schedule so the pace does not drift. Sends each session's RTCP when due.
pub(super) async fn pace(cfg: ShardConfig, sessions: Sessions, events: flume::Sender<Event>) {
    let period = Duration::from_millis(20);
    let mut next = Instant::now() + period;
    let mut pcm = [0i16; PTIME_SAMPLES];
    let mut out: Vec<u8> = Vec::with_capacity(1500);
    let mut rtcp: Vec<u8> = Vec::with_capacity(64);
    let mut mixed = [0i16; PTIME_SAMPLES];
    let mut tick: u64 = 0;
    let mut timer = Timer::new(period);
    loop {
        let now = Instant::now();
        if next > now {
            timer.reset(next - now);
            (&mut timer).await;
        }
        next += period;
        tick += 1;
        let _audit = ShardCode::enter();
        for sess in sessions.borrow().iter() {
            let (&call, sess) = sess;
            let mut guard = sess.state.borrow_mut();
            let st = &mut *guard;
            if now >= st.next_rtcp {
                st.next_rtcp = now + cfg.rtcp_interval;
                send_rtcp(st, &sess.socket, &mut rtcp);
            }
            if st.play.is_none() {
                if mixed_frame(st, tick, &mut mixed) {
                    send_pcm(st, &sess.socket, &mixed, &mut out);
                    continue;
                }
                keepalive(st, &sess.socket, now, &mut out);
                continue;
            }
            let (Some(play), Some(tx), Some(remote)) = (st.play.as_mut(), st.sender.as_mut(), st.remote) else {
                continue;
            };
            let mut filled = 0;
            while filled < PTIME_SAMPLES {
                if play.pos >= play.audio.len() {
                    if play.looped && !play.audio.is_empty() {
                        play.pos = 0;
                    } else {
                        break;
                    }
                }
                let take = (PTIME_SAMPLES - filled).min(play.audio.len() - play.pos);
                pcm[filled..filled + take].copy_from_slice(&play.audio[play.pos..play.pos + take]);
                play.pos += take;
                filled += take;
            }
            if filled == 0 {
                st.play = None;
                st.emit(&events, Event::PlayDone { call });
                continue;
            }
            pcm[filled..].fill(0);
            out.clear();
            if tx.pack_pcm(&pcm, &mut out).is_ok() {
                let _ = sess.socket.send_to(&out, remote);
            }
        }
    }
}

/// A mixed leg's frame for this tick: what the members it hears sent. False when the leg
/// is in no mix or hears nobody.
fn mixed_frame(st: &mut SessionState, tick: u64, out: &mut [i16; PTIME_SAMPLES]) -> bool {
    let Some(slot) = st.mix.as_ref() else { return false };
    let heard = slot.mixer.borrow_mut().frame_for(slot.index, tick, out);
    if let (true, Some(r)) = (heard, st.recording.as_mut()) {
        r.right.extend_from_slice(out);
    }
    heard
}

/// Sends one 20 ms frame of PCM to the leg's far end.
fn send_pcm(st: &mut SessionState, socket: &UdpSocket, pcm: &[i16], out: &mut Vec<u8>) {
    let (Some(tx), Some(remote)) = (st.sender.as_mut(), st.remote) else { return };
    out.clear();
    if tx.pack_pcm(pcm, out).is_ok() {
        let _ = socket.send_to(out, remote);
    }
}

/// One pacer tick of a leg that plays nothing: comfort noise once a second, or silence, or
/// nothing. A bridged leg carries its peer's audio instead.
fn keepalive(st: &mut SessionState, socket: &UdpSocket, now: Instant, out: &mut Vec<u8>) {
    let tick = leg::quiet_tick(st.keepalive, st.bridge.is_some(), st.held, now, st.next_keepalive);
    let (Some(tx), Some(remote)) = (st.sender.as_mut(), st.remote) else { return };
    out.clear();
    match tick {
        leg::QuietTick::Nothing => return,
        leg::QuietTick::Skip => {
            tx.skip(PTIME_SAMPLES as u32);
            return;
        }
        leg::QuietTick::SendSilence => {
            if tx.pack_pcm(&[0; PTIME_SAMPLES], out).is_err() {
                return;
            }
        }
        leg::QuietTick::SendCn { pt, next } => {
            st.next_keepalive = next;
            tx.pack_as(pt, &[leg::CN_LEVEL], PTIME_SAMPLES as u32, out);
        }
    }
    let _ = socket.send_to(out, remote);
}

/// Wall-clock time as an NTP timestamp (RFC 3550 §4), for sender reports.
pub(super) fn ntp_now() -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    ((d.as_secs() + UNIX_TO_NTP) << 32) | frac
}

/// Media timeouts and periodic statistics for every session of the shard.
pub(super) async fn tick(cfg: ShardConfig, sessions: Sessions, events: flume::Sender<Event>) {
    let period = (cfg.media_timeout / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
    let mut last_stats = Instant::now();
    let mut timer = Timer::new(period);
    loop {
        timer.reset(period);
        (&mut timer).await;
        let _audit = ShardCode::enter();
        let now = Instant::now();
        let stats_due = cfg.stats_interval.is_some_and(|i| now.duration_since(last_stats) >= i);
        if stats_due {
            last_stats = now;
        }
        for (&call, s) in sessions.borrow().iter() {
            let mut st = s.state.borrow_mut();
            if let Some(idle) = leg::media_timeout(st.last_packet, now, cfg.media_timeout, st.timeout_reported) {
                st.timeout_reported = true;
                st.emit(&events, Event::MediaTimeout { call, idle });
            }
            if stats_due {
                st.emit(&events, Event::Stats { call, stats: leg_stats(&st) });
            }
        }
    }
}

/// A sender report once we have sent media, a receiver report otherwise: on the RTP port
/// when the far end accepted rtcp-mux (RFC 5761), else on its RTP port + 1, so carriers'
/// session monitoring sees us as well-behaved.
pub(super) fn send_rtcp(st: &mut SessionState, socket: &UdpSocket, buf: &mut Vec<u8>) {
    let (Some(remote), Some(tx)) = (st.remote, st.sender.as_ref()) else { return };
    let info = crate::rtcp::SenderInfo {
        ntp: ntp_now(),
        rtp_ts: tx.timestamp(),
        packets: tx.packets as u32,
        octets: tx.octets as u32,
    };
    let block = st.media.report_block();
    buf.clear();
    if tx.packets > 0 {
        crate::rtcp::write_sr(tx.ssrc(), &info, block.as_ref(), buf);
    } else if block.is_some() {
        crate::rtcp::write_rr(tx.ssrc(), block.as_ref(), buf);
    }
    if !buf.is_empty() {
        let to = if st.rtcp_mux { remote } else { SocketAddr::new(remote.ip(), remote.port().wrapping_add(1)) };
        let _ = socket.send_to(buf, to);
    }
}
