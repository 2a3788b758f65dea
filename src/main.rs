//! `waihu`: the single binary. Subcommands grow with the project; today: `amd` (analyse
//! answered-call audio), `demo` (AMD over the shipped sample calls, with a score) and
//! `call` (one call over a SIP trunk, with AMD).

mod amd_cmd;
mod call_cmd;
mod demo;
mod dialer;

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Amd(a) => amd_cmd::run(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Call(a) => call_cmd::run(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("waihu: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
