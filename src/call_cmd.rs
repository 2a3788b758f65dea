//! `waihu call`: places one call over a SIP trunk, prints its progress on stderr as it
//! happens and its call record as one JSON line on stdout.

use anyhow::{anyhow, bail, Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use waihu_actors::call::{CallActor, CallCommand, CallSpec, Command, FlowConfig, HangupOn, KeepaliveMode, Progress};
use waihu_engine::worker::ShardConfig;
use waihu_model::CallId;
use waihu_sip::trunk::TrunkConfig;
use waihu_sip::AgentConfig;

#[derive(clap::Args, Debug)]
pub struct CallArgs {
    /// Who to call, e.g. sip:+8613800000000@127.0.0.1:5061
    pub target: String,
    /// Trunk file (TOML: host, port, transport, credentials, caller ID, caps). Without it
    /// the target's host and port are the trunk.
    #[arg(long)]
    pub trunk: Option<PathBuf>,
    /// Run answering-machine detection on the answered call.
    #[arg(long)]
    pub amd: bool,
    /// What to hang up on once AMD has decided: machine, human, any or never.
    #[arg(long, default_value = "never")]
    pub hangup_on: HangupOn,
    /// With --hangup-on machine: wait for the beep (the end of the machine's message)
    /// before hanging up, as a voicemail drop would.
    #[arg(long)]
    pub wait_for_beep: bool,
    /// Hang up an answered call after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_duration: f64,
    /// Put the answered call on hold this many seconds after the answer (re-INVITE
    /// a=sendonly, music to the far end), then resume after --hold-for.
    #[arg(long)]
    pub hold_after: Option<f64>,
    #[arg(long, default_value_t = 2.0)]
    pub hold_for: f64,
    /// Blind transfer: REFER the far end to this URI after --transfer-after seconds, then
    /// hang up once it is accepted.
    #[arg(long)]
    pub transfer_to: Option<String>,
    #[arg(long, default_value_t = 1.0)]
    pub transfer_after: f64,
    /// What the answered call sends while it plays nothing, so carriers' NAT and no-RTP
    /// timers see us: auto (RFC 3389 comfort noise once a second when the far end accepts
    /// CN, else silence every 20 ms), silence, or off.
    #[arg(long, default_value = "auto")]
    pub keepalive: KeepaliveMode,
    /// Ring this many seconds before CANCEL (overrides the trunk's ring_timeout_secs).
    #[arg(long)]
    pub ring_timeout: Option<u64>,
    /// Our SIP address (UDP; TCP too with --tcp).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sip_bind: SocketAddr,
    /// SIP timer T1 in ms (RFC 3261: 500 on the open Internet; smaller on a link with a
    /// known small round trip). The 64×T1 timers follow it, among them Timer M, which
    /// decides how long each answered INVITE's transaction is kept (its memory with it).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=5000))]
    pub sip_t1_ms: u64,
    /// Listen for SIP over TCP as well (on by itself when the trunk's transport is tcp).
    #[arg(long)]
    pub tcp: bool,
    /// Address for RTP.
    #[arg(long, default_value = "127.0.0.1")]
    pub rtp_ip: IpAddr,
    /// RTP port range, FIRST-LAST.
    #[arg(long, default_value = "20000-29999")]
    pub rtp_ports: String,
}

/// host and port of a SIP URI: `sip:user@host:port;params` or `sip:host:port`.
pub fn host_port(uri: &str) -> Result<(String, u16)> {
    let rest =
        uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:")).context("the target must be a sip: URI")?;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?', '>']).next().unwrap_or_default();
    if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6.split_once(']').context("unclosed [ in the target's host")?;
        let port = p.strip_prefix(':').map_or(Ok(5060), str::parse).context("bad port in the target")?;
        return Ok((format!("[{h}]"), port));
    }
    let (h, p) = hostport.rsplit_once(':').map_or((hostport, None), |(h, p)| (h, Some(p)));
    if h.is_empty() {
        bail!("the target {uri:?} has no host");
    }
    let port = p.map_or(Ok(5060), str::parse).context("bad port in the target")?;
    Ok((h.to_string(), port))
}

pub fn port_range(s: &str) -> Result<std::ops::Range<u16>> {
    let (a, b) = s.split_once('-').context("RTP ports are FIRST-LAST, e.g. 20000-29999")?;
    let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    if b <= a {
        bail!("RTP port range {s} is empty");
    }
    Ok(a..b + 1)
}

pub fn run(a: CallArgs) -> Result<ExitCode> {
    let mut trunk = match &a.trunk {
        Some(path) => TrunkConfig::load(path)?,
        None => {
            let (host, port) = host_port(&a.target)?;
            TrunkConfig::direct(&host, port)
        }
    };
    if let Some(r) = a.ring_timeout {
        trunk.ring_timeout_secs = r.max(1);
    }
    let secs = |name: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(anyhow::anyhow!("--{name} must be a non-negative number of seconds"))
        }
    };
    let flow = FlowConfig {
        id: 1,
        target: a.target.clone(),
        trunk: trunk.name.clone(),
        ring_timeout: trunk.ring_timeout(),
        hold_after: a.hold_after.map(|v| secs("hold-after", v)).transpose()?,
        hold_for: secs("hold-for", a.hold_for)?,
        transfer_to: a.transfer_to.clone(),
        transfer_after: secs("transfer-after", a.transfer_after)?,
        amd: a.amd,
        hangup_on: a.hangup_on,
        wait_for_beep: a.wait_for_beep,
        max_duration: secs("max-duration", a.max_duration)?,
        keepalive: a.keepalive,
        ..FlowConfig::default()
    }
    .with_sip_t1(Duration::from_millis(a.sip_t1_ms));
    let media = ShardConfig { bind_ip: a.rtp_ip, ports: port_range(&a.rtp_ports)?, ..ShardConfig::default() };
    let tcp_trunk = trunk.transport == waihu_sip::trunk::Transport::Tcp;
    let sip = AgentConfig {
        bind: a.sip_bind,
        tcp: a.tcp || tcp_trunk,
        t1: Duration::from_millis(a.sip_t1_ms),
        ..AgentConfig::default()
    };
    let (sip_rt, env) = crate::platform::start(sip, media, 1, 1)?;
    let mut stop = crate::platform::signals(&sip_rt)?;
    eprintln!("waihu: SIP on {}", env.sip.local_addr());
    let spec = CallSpec { flow, trunk: Arc::new(trunk), shard: None, call_id: None };
    let record = actix::System::new().block_on(async move {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let record = Box::new(move |r| {
            let _ = tx.send(r);
        });
        // `env` outlives the call: the last SIP agent handle closes the transports.
        let call = CallActor::start(env.clone(), spec, Box::new(print_progress), record).await?;
        let record = tokio::select! {
            r = &mut rx => r,
            _ = crate::platform::stopped(&mut stop) => {
                call.do_send(CallCommand(Command::Shutdown));
                rx.await
            }
        };
        if tcp_trunk {
            // Keep the TCP connection open a moment after the last transaction, so the far
            // end is not cut off while it finishes its own (SIPp counts a TCP close during
            // its time-wait as a failed call).
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        drop(env);
        record.map_err(|_| anyhow!("the call ended without a record"))
    })?;
    drop(sip_rt);
    println!("{}", serde_json::to_string(&record)?);
    Ok(ExitCode::SUCCESS)
}

fn print_progress(_call: CallId, p: &Progress) {
    match p {
        Progress::SafeHarbour => eprintln!("waihu: no agent in time: playing the safe-harbour message"),
        Progress::Connected { peer } => eprintln!("waihu: bridged to leg {peer}"),
        Progress::Relaying => eprintln!("waihu: the bridge carries audio"),
        Progress::Inviting { call_id, rtp_port } => {
            eprintln!("waihu: INVITE sent (Call-ID {call_id}, RTP port {rtp_port})")
        }
        Progress::Ringing { status, early_media } => {
            eprintln!("waihu: ringing ({status}{})", if *early_media { ", early media" } else { "" })
        }
        Progress::Answered { after_ms } => eprintln!("waihu: answered after {after_ms} ms"),
        Progress::Amd { answered_by, cause, media_ms, after_answer_ms } => eprintln!(
            "waihu: AMD: {answered_by} ({cause}), {after_answer_ms} ms after the answer (media time {media_ms} ms)"
        ),
        Progress::Beep { hz, start_ms, end_ms } => eprintln!("waihu: beep {hz} Hz, media time {start_ms}-{end_ms} ms"),
        Progress::MessageEnd { at_ms: Some(t) } => eprintln!("waihu: machine message ended at media time {t} ms"),
        Progress::MessageEnd { at_ms: None } => eprintln!("waihu: stopped listening for the end of the message"),
        Progress::Dtmf { digit } => eprintln!("waihu: DTMF {digit}"),
        Progress::EarlySit { media_ms } => eprintln!("waihu: SIT tones in early media at {media_ms} ms: cancelling"),
        Progress::Hold { status } => eprintln!("waihu: hold (re-INVITE a=sendonly) -> {status}"),
        Progress::Resume { status } => eprintln!("waihu: resume (re-INVITE a=sendrecv) -> {status}"),
        Progress::Transfer { to, status } => eprintln!("waihu: REFER to {to} -> {status}"),
        Progress::TransferResult { status } => eprintln!("waihu: transfer result (NOTIFY) {status}"),
        Progress::ReferDeclined { target } => eprintln!("waihu: declined the far end's REFER to {target}"),
        Progress::ReferRequested { target } => eprintln!("waihu: accepted a REFER to {target}"),
        Progress::ReviewSample { wav } => eprintln!("waihu: kept {} bytes of audio for review", wav.len()),
        Progress::HangingUp { reason } => eprintln!("waihu: hanging up ({reason})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_port_ranges_parse_or_say_why() {
        assert_eq!(host_port("sip:+8613800000000@127.0.0.1:5061").expect("ok"), ("127.0.0.1".into(), 5061));
        assert_eq!(host_port("sip:bob@example.com").expect("ok"), ("example.com".into(), 5060));
        assert_eq!(host_port("sip:10.0.0.1:5070;transport=tcp").expect("ok"), ("10.0.0.1".into(), 5070));
        assert_eq!(host_port("sip:x@[::1]:5062").expect("ok"), ("[::1]".into(), 5062));
        assert!(host_port("tel:+861234").is_err());
        assert!(host_port("sip:x@host:notaport").is_err());
        assert!(host_port("sip:x@").is_err());
        assert_eq!(port_range("20000-20009").expect("ok"), 20000..20010);
        assert!(port_range("20009-20000").is_err());
        assert!(port_range("20000").is_err());
    }
}
