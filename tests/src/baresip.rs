//! baresip (Debian's `baresip-core` 1.0.0) as a real, headless agent softphone: a config
//! directory, the process, and its ctrl_tcp control socket (netstring-framed JSON). See
//! ../shared/notes/baresip-agent.md for why each setting is there.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether baresip is installed (the tests skip loudly when it is not).
pub fn available() -> bool {
    Command::new("baresip").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[derive(Debug, Clone)]
pub struct PhoneConfig {
    pub user: String,
    pub password: String,
    /// The registrar (our SIP address).
    pub registrar: SocketAddr,
    /// Re-register interval in seconds (the binding's Expires).
    pub regint: u32,
    /// What the phone's microphone plays: 8 kHz mono S16 PCM (padded with silence to
    /// outlast every call, or baresip hangs up when it runs out).
    pub mic: Vec<i16>,
}

/// A running baresip.
#[derive(Debug)]
pub struct Phone {
    pub dir: PathBuf,
    pub sip_port: u16,
    ctrl: SocketAddr,
    child: Child,
}

fn write_wav(path: &Path, pcm: &[i16]) {
    let mut b = Vec::with_capacity(44 + pcm.len() * 2);
    let data = (pcm.len() * 2) as u32;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&16000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for s in pcm {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).expect("write the microphone WAV");
}

impl Phone {
    /// Writes the config into `dir` and starts baresip there, with ports picked at run time.
    pub fn start(dir: &Path, cfg: &PhoneConfig) -> Phone {
        std::fs::create_dir_all(dir).expect("baresip dir");
        let sip_port = crate::free_udp_port();
        let ctrl_port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free TCP port").port();
        let rtp = crate::free_udp_port() & !1;
        write_wav(&dir.join("mic.wav"), &cfg.mic);
        let accounts = format!(
            "<sip:{u}@{r}>;auth_pass={p};answermode=auto;regint={i};audio_codecs=pcmu\n",
            u = cfg.user,
            r = cfg.registrar,
            p = cfg.password,
            i = cfg.regint
        );
        std::fs::write(dir.join("accounts"), accounts).expect("baresip accounts");
        let d = dir.display();
        let config = format!(
            "poll_method\tepoll\nsip_listen\t127.0.0.1:{sip_port}\nnet_interface\t127.0.0.1\ncall_local_timeout\t120\n\
             call_max_calls\t4\naudio_source\taufile,{d}/mic.wav\naudio_player\taubridge,spk\naudio_alert\taubridge,alert\n\
             ausrc_srate\t8000\nauplay_srate\t8000\nausrc_channels\t1\nauplay_channels\t1\nrtp_ports\t{rtp}-{}\n\
             rtcp_mux\tno\njitter_buffer_delay\t5-10\nrtp_stats\tyes\nmodule_path\t/usr/lib/baresip/modules\n\
             module\tg711.so\nmodule\taufile.so\nmodule\taubridge.so\nmodule\tsndfile.so\nmodule_tmp\taccount.so\n\
             module_app\tmenu.so\nmodule_app\tctrl_tcp.so\nstatmode_default\toff\nctrl_tcp_listen\t127.0.0.1:{ctrl_port}\n\
             snd_path\t{d}\n",
            rtp + 20
        );
        std::fs::write(dir.join("config"), config).expect("baresip config");
        let log = std::fs::File::create(dir.join("baresip.log")).expect("baresip log");
        let child = Command::new("baresip")
            .args(["-f", &dir.display().to_string(), "-t", "120"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start baresip");
        Phone { dir: dir.to_path_buf(), sip_port, ctrl: SocketAddr::from(([127, 0, 0, 1], ctrl_port)), child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// Sends one ctrl_tcp command; the raw replies and events read within a moment.
    pub fn command(&self, command: &str, params: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&self.ctrl, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        let json = format!("{{\"command\":\"{command}\",\"params\":\"{params}\",\"token\":\"t\"}}");
        s.write_all(format!("{}:{json},", json.len()).as_bytes())?;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&out).contains("\"response\"") {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Asks baresip to quit (it un-REGISTERs) and waits for it; kills it if it hangs.
    pub fn quit(mut self) -> Option<i32> {
        let _ = self.command("quit", "");
        let code = crate::wait_child(&mut self.child, Duration::from_secs(10));
        std::mem::forget(self);
        code
    }

    /// SIGKILL now, as a phone that vanishes mid-call: no BYE, no un-REGISTER.
    pub fn vanish(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL, as a phone that vanishes: no un-REGISTER, no BYE.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }

    /// What the phone heard on its calls (the sndfile module's `…-dec.wav` files), as 8 kHz
    /// PCM, oldest first.
    pub fn heard(&self) -> Vec<Vec<i16>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
        });
        files.sort();
        files
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| b.get(44..).unwrap_or(&[]).chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect())
            .collect()
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sine tone at `hz`, 8 kHz, `secs` long, at half scale, then `pad_secs` of silence.
pub fn tone(hz: f64, secs: f64, pad_secs: f64) -> Vec<i16> {
    let n = (secs * 8000.0) as usize;
    let mut v: Vec<i16> =
        (0..n).map(|i| ((i as f64 * hz * 2.0 * std::f64::consts::PI / 8000.0).sin() * 16_000.0) as i16).collect();
    v.resize(n + (pad_secs * 8000.0) as usize, 0);
    v
}

/// The share of the signal's energy at `hz`, by a Goertzel filter over 1 s windows
/// of the loudest stretch; 0 for silence.
pub fn tone_share(pcm: &[i16], hz: f64) -> f64 {
    let win = 8000usize;
    let mut best = 0.0f64;
    for w in pcm.chunks(win).filter(|w| w.len() == win) {
        let energy: f64 = w.iter().map(|&s| (s as f64).powi(2)).sum();
        if energy < 1e3 * win as f64 {
            continue;
        }
        let k = (2.0 * std::f64::consts::PI * hz / 8000.0).cos() * 2.0;
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in w {
            let s0 = x as f64 + k * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - k * s1 * s2;
        // A pure tone's Goertzel power over N samples is (N/2)^2 · A^2/... ; normalise by
        // the window's energy × N/2 so a pure tone gives 1.
        best = best.max(power / (energy * win as f64 / 2.0));
    }
    best
}

/// How many 20 ms frames of `pcm` are mostly `hz` (over 80% of a loud frame's energy).
pub fn tone_frames(pcm: &[i16], hz: f64) -> usize {
    tone_frames_at(pcm, hz, 0.8)
}

/// How many loud 20 ms frames of `pcm` have more than `share` of their energy at `hz`
/// (a mix of two equal tones gives each about half).
pub fn tone_frames_at(pcm: &[i16], hz: f64, share: f64) -> usize {
    pcm.chunks_exact(160)
        .filter(|w| {
            let energy: f64 = w.iter().map(|&s| (s as f64).powi(2)).sum();
            if energy < 1e4 * 160.0 {
                return false;
            }
            let k = (2.0 * std::f64::consts::PI * hz / 8000.0).cos() * 2.0;
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for &x in w.iter() {
                let s0 = x as f64 + k * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let power = s1 * s1 + s2 * s2 - k * s1 * s2;
            power / (energy * 80.0) > share
        })
        .count()
}
