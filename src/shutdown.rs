//! Graceful shutdown on SIGINT and SIGTERM: the first signal stops dialling and ends every
//! live call (BYE, or CANCEL before the answer), so each writes its record; a second signal
//! exits at once.

use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Watches for the signals on the current tokio runtime. Fails only when the signal
/// handlers cannot be installed.
pub fn on_signals(stop: Arc<watch::Sender<bool>>) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let code = tokio::select! {
                _ = term.recv() => 143,
                _ = int.recv() => 130,
            };
            seen += 1;
            if seen > 1 {
                eprintln!("waihu: second signal: exiting now");
                std::process::exit(code);
            }
            eprintln!("waihu: signal received: ending live calls (send it again to exit at once)");
            let _ = stop.send(true);
        }
    });
    Ok(())
}
