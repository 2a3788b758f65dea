//! `waihu`: the single binary. Subcommands grow with the project; today: `amd` (analyse
//! answered-call audio), `demo` (AMD over the shipped sample calls, with a score) and
//! `call` (one call over a SIP trunk, with AMD), `dial` (the SIP throughput benchmark),
//! `serve` (run the store's campaigns) and the operator's `campaign`, `dnc`, `cdr`,
//! `agent`, `kb` and `script`.

mod agent_cmd;
mod amd_cmd;
mod assist_cmd;
mod call_cmd;
mod campaign_cmd;
mod demo;
mod dial_cmd;
mod floor;
mod platform;
mod review_cmd;
mod serve_cmd;
mod shutdown;
mod trunk_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "waihu", version, about = "waihu (外呼): outbound call system")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Answering-machine detection on WAV files (8/16/48 kHz; PCM16, mu-law, A-law).
    Amd(amd_cmd::AmdArgs),
    /// Run AMD over the sample calls in samples/ and print decisions, timings and a score.
    Demo(demo::DemoArgs),
    /// Place one call over a SIP trunk; progress on stderr, the call record as JSON on stdout.
    Call(call_cmd::CallArgs),
    /// SIP throughput benchmark: many calls to one target at a capped rate, with media and AMD.
    Dial(dial_cmd::DialArgs),
    /// OPTIONS keepalives to a trunk: prints each answer and the trunk's up/down state.
    TrunkCheck(trunk_cmd::TrunkCheckArgs),
    /// Run the store's campaigns: dial, record every attempt, survive restarts.
    Serve(serve_cmd::ServeArgs),
    /// Create, import into, start, pause, stop a campaign, or show its status.
    #[command(subcommand)]
    Campaign(campaign_cmd::CampaignCmd),
    /// Do-not-call lists.
    #[command(subcommand)]
    Dnc(campaign_cmd::DncCmd),
    /// Agents and their phones.
    #[command(subcommand)]
    Agent(agent_cmd::AgentCmd),
    /// Call detail records.
    #[command(subcommand)]
    Cdr(campaign_cmd::CdrCmd),
    /// The knowledge base agents search during calls (Chinese and English).
    #[command(subcommand)]
    Kb(assist_cmd::KbCmd),
    /// A campaign's call script, filled in for one contact.
    Script(assist_cmd::ScriptArgs),
    /// AMD review samples: listen to machine calls and judge them (the false-positive rate).
    #[command(subcommand)]
    Review(review_cmd::ReviewCmd),
    /// Convert a WAV (any rate; PCM16, mu-law, A-law) to headerless 8 kHz mu-law, the
    /// format SIPp's rtp_stream plays.
    ToUlaw { wav: std::path::PathBuf, out: std::path::PathBuf },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Amd(a) => amd_cmd::run(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Call(a) => call_cmd::run(a),
        Cmd::Dial(a) => dial_cmd::run(a),
        Cmd::TrunkCheck(a) => trunk_cmd::run(a),
        Cmd::Serve(a) => serve_cmd::run(a),
        Cmd::Campaign(c) => campaign_cmd::run(c),
        Cmd::Dnc(c) => campaign_cmd::dnc(c),
        Cmd::Cdr(c) => campaign_cmd::cdr(c),
        Cmd::Agent(c) => agent_cmd::run(c),
        Cmd::Kb(c) => assist_cmd::kb(c),
        Cmd::Script(a) => assist_cmd::script(a),
        Cmd::Review(c) => review_cmd::run(c),
        Cmd::ToUlaw { wav, out } => to_ulaw(&wav, &out),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("waihu: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn to_ulaw(wav: &std::path::Path, out: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context;
    let bytes = std::fs::read(wav).with_context(|| format!("reading {}", wav.display()))?;
    let pcm = waihu_engine::offline::wav_to_analysis_pcm(&bytes).with_context(|| format!("{}", wav.display()))?;
    let ulaw: Vec<u8> = pcm.iter().map(|&s| waihu_engine::codec::g711::ulaw_encode(s)).collect();
    std::fs::write(out, ulaw).with_context(|| format!("writing {}", out.display()))?;
    Ok(std::process::ExitCode::SUCCESS)
}
