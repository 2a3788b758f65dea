//! SDP (RFC 4566) for one audio stream, and offer/answer (RFC 3264): we write offers and
//! answers for PCMU, PCMA, Opus and telephone-event, with rtcp-mux and a direction for
//! hold. Parsing is tolerant of what carriers send and never panics; input it cannot use
//! is an [`SdpError`].

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// Longest SDP body accepted.
pub const MAX_SDP: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP body of {0} bytes is over the {MAX_SDP}-byte limit")]
    TooLarge(usize),
    #[error("line {line}: {what}")]
    Malformed { line: usize, what: &'static str },
    #[error("no audio m= line")]
    NoAudio,
    #[error("no connection address (c=) for the audio stream")]
    NoConnection,
    #[error("the audio stream was rejected (port 0)")]
    Rejected,
    #[error("no codec in common (offered payload types: {0:?})")]
    NoCommonCodec(Vec<u8>),
}

/// The codec type SDP negotiates (the one every plane shares).
pub use waihu_model::Codec;

/// Media direction (hold is `SendOnly` from the holder, RFC 3264 §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// What the other side's direction makes ours in an answer.
    fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

/// One payload type from an m= line with what its rtpmap says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub pt: u8,
    /// Encoding name, lower-case ("pcmu", "opus", "telephone-event"); static types get
    /// their RFC 3551 name when no rtpmap is given.
    pub name: String,
    pub clock_rate: u32,
}

/// The audio part of a parsed SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDescription {
    pub address: SocketAddr,
    /// Offered formats in the sender's order of preference.
    pub formats: Vec<Format>,
    pub ptime: Option<u32>,
    pub direction: Direction,
    pub rtcp_mux: bool,
}

/// What both sides agreed on for the call's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send RTP.
    pub remote: SocketAddr,
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
    /// RFC 3389 comfort noise, when both sides offered it: its payload type.
    pub comfort_noise: Option<u8>,
    pub ptime: u32,
    /// Our direction.
    pub direction: Direction,
    pub rtcp_mux: bool,
}

/// What we offer or accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub address: SocketAddr,
    /// In order of preference.
    pub codecs: Vec<Codec>,
    pub telephone_event: bool,
    /// Offer RFC 3389 comfort noise (CN/8000, payload type 13).
    pub comfort_noise: bool,
    pub ptime: u32,
    pub direction: Direction,
    /// o= session id and version (bump the version on every re-offer).
    pub session_id: u64,
    pub version: u64,
}

const PT_OPUS: u8 = 111;
const PT_TE: u8 = 101;
const PT_CN: u8 = 13;

fn static_pt(c: Codec) -> u8 {
    match c {
        Codec::Pcmu => 0,
        Codec::Pcma => 8,
        Codec::Opus => PT_OPUS,
    }
}

fn write_sdp(local: &LocalMedia, fmts: &[(u8, String, Option<String>)]) -> String {
    let ip = local.address.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(512);
    // Invariant: writing to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=waihu {} {} IN {family} {ip}\r\ns=waihu\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
        local.session_id, local.version
    );
    let pts: Vec<String> = fmts.iter().map(|f| f.0.to_string()).collect();
    let _ = write!(s, "m=audio {} RTP/AVP {}\r\n", local.address.port(), pts.join(" "));
    for (pt, map, fmtp) in fmts {
        let _ = write!(s, "a=rtpmap:{pt} {map}\r\n");
        if let Some(f) = fmtp {
            let _ = write!(s, "a=fmtp:{pt} {f}\r\n");
        }
    }
    let _ = write!(s, "a=ptime:{}\r\na=rtcp-mux\r\na={}\r\n", local.ptime, local.direction.attr());
    s
}

fn our_formats(codecs: &[Codec], te: Option<u8>) -> Vec<(u8, String, Option<String>)> {
    let mut v: Vec<(u8, String, Option<String>)> = codecs
        .iter()
        .map(|&c| {
            let fmtp = (c == Codec::Opus).then(|| "useinbandfec=1; maxplaybackrate=16000".to_string());
            (static_pt(c), c.rtpmap().to_string(), fmtp)
        })
        .collect();
    if let Some(pt) = te {
        v.push((pt, "telephone-event/8000".into(), Some("0-16".into())));
    }
    v
}

/// Writes our offer.
pub fn offer(local: &LocalMedia) -> String {
    let mut fmts = our_formats(&local.codecs, local.telephone_event.then_some(PT_TE));
    if local.comfort_noise {
        fmts.push((PT_CN, "CN/8000".into(), None));
    }
    write_sdp(local, &fmts)
}

fn codec_of(f: &Format) -> Option<Codec> {
    match (f.name.as_str(), f.clock_rate) {
        ("pcmu", 8000) => Some(Codec::Pcmu),
        ("pcma", 8000) => Some(Codec::Pcma),
        ("opus", 48000) => Some(Codec::Opus),
        _ => None,
    }
}

fn negotiate(
    remote: &AudioDescription,
    ours: &[Codec],
    want_te: bool,
    want_cn: bool,
    direction: Direction,
    ptime: u32,
) -> Result<Negotiated, SdpError> {
    if remote.address.port() == 0 {
        return Err(SdpError::Rejected);
    }
    let (pt, codec) = remote
        .formats
        .iter()
        .find_map(|f| codec_of(f).filter(|c| ours.contains(c)).map(|c| (f.pt, c)))
        .ok_or_else(|| SdpError::NoCommonCodec(remote.formats.iter().map(|f| f.pt).collect()))?;
    let te = want_te
        .then(|| remote.formats.iter().find(|f| f.name == "telephone-event" && f.clock_rate == 8000).map(|f| f.pt))
        .flatten();
    let cn =
        want_cn.then(|| remote.formats.iter().find(|f| f.name == "cn" && f.clock_rate == 8000).map(|f| f.pt)).flatten();
    Ok(Negotiated {
        remote: remote.address,
        codec,
        payload_type: pt,
        telephone_event: te,
        comfort_noise: cn,
        ptime: remote.ptime.unwrap_or(ptime),
        direction,
        rtcp_mux: remote.rtcp_mux,
    })
}

/// Answers a remote offer: picks the first offered codec we support, keeps the offerer's
/// payload type numbers, mirrors the direction. Returns our answer SDP and the result.
pub fn answer(remote_offer: &str, local: &LocalMedia) -> Result<(String, Negotiated), SdpError> {
    let remote = parse(remote_offer)?;
    let direction = match (remote.direction.reversed(), local.direction) {
        (Direction::Inactive, _) | (_, Direction::Inactive) => Direction::Inactive,
        (d, Direction::SendRecv) => d,
        (Direction::SendRecv, d) => d,
        (a, b) if a == b => a,
        _ => Direction::Inactive,
    };
    let n = negotiate(&remote, &local.codecs, local.telephone_event, local.comfort_noise, direction, local.ptime)?;
    let mut fmts = vec![(n.payload_type, n.codec.rtpmap().to_string(), None)];
    if let Some(te) = n.telephone_event {
        fmts.push((te, "telephone-event/8000".into(), Some("0-16".into())));
    }
    if let Some(cn) = n.comfort_noise {
        fmts.push((cn, "CN/8000".into(), None));
    }
    let sdp = write_sdp(&LocalMedia { direction, ..local.clone() }, &fmts);
    Ok((sdp, n))
}

/// Reads the remote answer to our offer.
pub fn accept_answer(remote_answer: &str, local: &LocalMedia) -> Result<Negotiated, SdpError> {
    let remote = parse(remote_answer)?;
    let direction = remote.direction.reversed();
    negotiate(&remote, &local.codecs, local.telephone_event, local.comfort_noise, direction, local.ptime)
}

fn static_name(pt: u8) -> Option<(&'static str, u32)> {
    match pt {
        0 => Some(("pcmu", 8000)),
        8 => Some(("pcma", 8000)),
        9 => Some(("g722", 8000)),
        13 => Some(("cn", 8000)),
        18 => Some(("g729", 8000)),
        _ => None,
    }
}

fn parse_ip(line: usize, v: &str) -> Result<IpAddr, SdpError> {
    // c=IN IP4 203.0.113.1[/ttl]
    let mut it = v.split_whitespace();
    let (Some("IN"), Some(_family), Some(addr)) = (it.next(), it.next(), it.next()) else {
        return Err(SdpError::Malformed { line, what: "c= is not `IN <family> <address>`" });
    };
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse().map_err(|_| SdpError::Malformed { line, what: "c= address is not an IP address" })
}

/// Parses an SDP body and returns its first audio stream.
pub fn parse(sdp: &str) -> Result<AudioDescription, SdpError> {
    if sdp.len() > MAX_SDP {
        return Err(SdpError::TooLarge(sdp.len()));
    }
    let mut session_ip: Option<IpAddr> = None;
    let mut session_dir = Direction::SendRecv;
    // Audio m= section state.
    let mut in_audio = false;
    let mut seen_audio = false;
    let mut media_ip: Option<IpAddr> = None;
    let mut port: u16 = 0;
    let mut pts: Vec<u8> = Vec::new();
    let mut maps: Vec<(u8, String, u32)> = Vec::new();
    let mut ptime = None;
    let mut dir: Option<Direction> = None;
    let mut mux = false;
    for (i, raw) in sdp.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_end_matches('\r');
        if l.is_empty() {
            continue;
        }
        let (k, v) = l.split_once('=').ok_or(SdpError::Malformed { line, what: "not `<type>=<value>`" })?;
        if k.len() != 1 {
            return Err(SdpError::Malformed { line, what: "type is not one character" });
        }
        match k {
            "m" => {
                if seen_audio {
                    in_audio = false;
                    continue;
                }
                let mut it = v.split_whitespace();
                let media = it.next().unwrap_or("");
                in_audio = media == "audio";
                if !in_audio {
                    continue;
                }
                seen_audio = true;
                let p = it.next().ok_or(SdpError::Malformed { line, what: "m= without a port" })?;
                port = p
                    .split('/')
                    .next()
                    .unwrap_or(p)
                    .parse()
                    .map_err(|_| SdpError::Malformed { line, what: "m= port is not a number" })?;
                let _proto = it.next().ok_or(SdpError::Malformed { line, what: "m= without a protocol" })?;
                for f in it {
                    let pt: u8 =
                        f.parse().map_err(|_| SdpError::Malformed { line, what: "m= format is not a payload type" })?;
                    if pt > 127 {
                        return Err(SdpError::Malformed { line, what: "payload type above 127" });
                    }
                    pts.push(pt);
                }
            }
            "c" if !seen_audio => session_ip = Some(parse_ip(line, v)?),
            "c" if in_audio => media_ip = Some(parse_ip(line, v)?),
            "a" => {
                let (name, value) = v.split_once(':').unwrap_or((v, ""));
                let d = match name {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                if let Some(d) = d {
                    if in_audio {
                        dir = Some(d);
                    } else if !seen_audio {
                        session_dir = d;
                    }
                    continue;
                }
                if !in_audio {
                    continue;
                }
                match name {
                    "rtpmap" => {
                        let (pt, enc) = value
                            .split_once(' ')
                            .ok_or(SdpError::Malformed { line, what: "rtpmap without an encoding" })?;
                        let pt: u8 =
                            pt.trim().parse().map_err(|_| SdpError::Malformed { line, what: "rtpmap payload type" })?;
                        let mut parts = enc.trim().split('/');
                        let name = parts.next().unwrap_or("").to_ascii_lowercase();
                        let rate: u32 = parts
                            .next()
                            .and_then(|r| r.parse().ok())
                            .ok_or(SdpError::Malformed { line, what: "rtpmap clock rate" })?;
                        maps.push((pt, name, rate));
                    }
                    "ptime" => ptime = value.trim().parse().ok().filter(|p| (10..=120).contains(p)),
                    "rtcp-mux" => mux = true,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !seen_audio {
        return Err(SdpError::NoAudio);
    }
    let ip = media_ip.or(session_ip).ok_or(SdpError::NoConnection)?;
    let formats = pts
        .iter()
        .filter_map(|&pt| match maps.iter().find(|m| m.0 == pt) {
            Some((_, name, rate)) => Some(Format { pt, name: name.clone(), clock_rate: *rate }),
            None => static_name(pt).map(|(n, r)| Format { pt, name: n.into(), clock_rate: r }),
        })
        .collect();
    Ok(AudioDescription {
        address: SocketAddr::new(ip, port),
        formats,
        ptime,
        direction: dir.unwrap_or(session_dir),
        rtcp_mux: mux,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(codecs: Vec<Codec>) -> LocalMedia {
        LocalMedia {
            address: "192.0.2.10:20000".parse().expect("addr"),
            codecs,
            telephone_event: true,
            comfort_noise: true,
            ptime: 20,
            direction: Direction::SendRecv,
            session_id: 42,
            version: 1,
        }
    }

    #[test]
    fn our_offer_parses_back() {
        let o = offer(&local(vec![Codec::Pcmu, Codec::Pcma, Codec::Opus]));
        assert!(o.contains("m=audio 20000 RTP/AVP 0 8 111 101 13\r\n"), "{o}");
        assert!(o.contains("a=rtpmap:13 CN/8000\r\n"), "comfort noise is offered: {o}");
        let d = parse(&o).expect("parse");
        assert_eq!(d.address, "192.0.2.10:20000".parse().expect("addr"));
        let names: Vec<_> = d.formats.iter().map(|f| (f.pt, f.name.as_str(), f.clock_rate)).collect();
        assert_eq!(
            names,
            vec![
                (0, "pcmu", 8000),
                (8, "pcma", 8000),
                (111, "opus", 48000),
                (101, "telephone-event", 8000),
                (13, "cn", 8000)
            ]
        );
        assert_eq!((d.ptime, d.direction, d.rtcp_mux), (Some(20), Direction::SendRecv, true));
    }

    const CARRIER_OFFER: &str = "v=0\r\no=- 123 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
        m=audio 31000 RTP/AVP 18 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=ptime:30\r\na=sendrecv\r\n";

    #[test]
    fn answer_picks_the_offerers_first_common_codec_and_keeps_its_numbers() {
        let (ans, n) = answer(CARRIER_OFFER, &local(vec![Codec::Pcmu, Codec::Pcma])).expect("answer");
        assert_eq!((n.codec, n.payload_type, n.telephone_event, n.ptime), (Codec::Pcma, 8, Some(96), 30));
        assert_eq!(n.remote, "198.51.100.7:31000".parse().expect("addr"));
        assert!(ans.contains("m=audio 20000 RTP/AVP 8 96\r\n"), "{ans}");
        assert!(ans.contains("a=rtpmap:96 telephone-event/8000"), "{ans}");
    }

    #[test]
    fn hold_directions_mirror_in_the_answer() {
        let held = CARRIER_OFFER.replace("a=sendrecv", "a=sendonly");
        let (ans, n) = answer(&held, &local(vec![Codec::Pcmu, Codec::Pcma])).expect("answer");
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(ans.contains("a=recvonly"), "{ans}");
        let off = CARRIER_OFFER.replace("a=sendrecv", "a=inactive");
        assert_eq!(answer(&off, &local(vec![Codec::Pcma])).expect("answer").1.direction, Direction::Inactive);
    }

    #[test]
    fn accepting_an_answer_gives_the_media_to_use() {
        let ans = "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\nc=IN IP4 203.0.113.5\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp-mux\r\n";
        let n = accept_answer(ans, &local(vec![Codec::Opus, Codec::Pcmu])).expect("accept");
        assert_eq!((n.codec, n.payload_type, n.telephone_event, n.rtcp_mux), (Codec::Pcmu, 0, Some(101), true));
        assert_eq!(n.remote, "203.0.113.5:40000".parse().expect("addr"));
    }

    #[test]
    fn comfort_noise_is_used_only_when_both_sides_offer_it() {
        let ours = local(vec![Codec::Pcmu]);
        let base = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n";
        let with = format!("{base}m=audio 6000 RTP/AVP 0 13\r\n");
        let without = format!("{base}m=audio 6000 RTP/AVP 0\r\n");
        assert_eq!(accept_answer(&with, &ours).expect("cn").comfort_noise, Some(13));
        assert_eq!(accept_answer(&without, &ours).expect("no cn").comfort_noise, None);
        let (ans, n) = answer(&with, &ours).expect("answer");
        assert_eq!(n.comfort_noise, Some(13));
        assert!(ans.contains("RTP/AVP 0 13\r\n"), "our answer keeps CN: {ans}");
        let no_cn = LocalMedia { comfort_noise: false, ..ours };
        assert_eq!(accept_answer(&with, &no_cn).expect("cn").comfort_noise, None, "not asked for, not used");
    }

    #[test]
    fn unusable_descriptions_are_clear_errors() {
        let l = local(vec![Codec::Pcmu]);
        assert_eq!(parse("v=0\r\nm=video 5000 RTP/AVP 96\r\n"), Err(SdpError::NoAudio));
        assert_eq!(parse("v=0\r\nm=audio 5000 RTP/AVP 0\r\n"), Err(SdpError::NoConnection));
        assert_eq!(accept_answer(&CARRIER_OFFER.replace("31000", "0"), &l), Err(SdpError::Rejected));
        assert!(
            matches!(accept_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 18\r\n", &l), Err(SdpError::NoCommonCodec(v)) if v == vec![18])
        );
        assert!(matches!(parse("v=0\r\nc=IN IP4 nonsense\r\n"), Err(SdpError::Malformed { line: 2, .. })));
        assert!(matches!(parse("garbage"), Err(SdpError::Malformed { line: 1, .. })));
        assert!(matches!(
            parse("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 300\r\n"),
            Err(SdpError::Malformed { .. })
        ));
        assert_eq!(parse(&"a".repeat(MAX_SDP + 1)), Err(SdpError::TooLarge(MAX_SDP + 1)));
    }

    #[test]
    fn random_and_mutated_sdp_never_panics() {
        let mut x: u64 = 0x9e37_79b9;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = CARRIER_OFFER.as_bytes();
        for _ in 0..20_000 {
            let mut b = base.to_vec();
            for _ in 0..1 + next() % 8 {
                let k = (next() % b.len() as u64) as usize;
                match next() % 3 {
                    0 => b[k] = next() as u8,
                    1 => {
                        b.remove(k);
                    }
                    _ => b.insert(k, b"=:/ \r\n0123456789"[(next() % 16) as usize]),
                }
            }
            let s = String::from_utf8_lossy(&b);
            let _ = parse(&s);
            // Whatever we answer must itself be a valid description of what we negotiated.
            if let Ok((ans, n)) = answer(&s, &local(vec![Codec::Pcmu, Codec::Opus])) {
                let back = parse(&ans).expect("our answer parses");
                assert_eq!(back.formats[0].pt, n.payload_type);
                assert_eq!(back.direction, n.direction);
            }
        }
    }
}
