//! Start-up shared by the commands that place calls: the SIP agent on its own tokio
//! runtime, the media shards on their glommio threads, and the signal handlers. Calls
//! themselves run as actors (`waihu_actors::call`) on an actix system the command starts.

use anyhow::{anyhow, Context, Result};
use std::sync::Arc;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use waihu_actors::call::CallEnv;
use waihu_engine::worker::{MediaPlane, ShardConfig};
use waihu_sip::{AgentConfig, SipAgent};

/// The SIP runtime (keep it alive while calls run; drop it outside any async context)
/// and what every call shares.
pub fn start(sip: AgentConfig, media: ShardConfig, shards: usize, sip_threads: usize) -> Result<(Runtime, CallEnv)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(sip_threads.max(1))
        .thread_name("waihu-sip")
        .enable_all()
        .build()?;
    let agent = rt.block_on(SipAgent::start(sip)).context("starting the SIP agent")?;
    let plane = MediaPlane::spawn(shards.max(1), media).map_err(|e| anyhow!("starting the media plane: {e}"))?;
    Ok((rt, CallEnv { sip: agent, plane: Arc::new(plane) }))
}

/// Installs the SIGINT/SIGTERM handlers on the SIP runtime: the receiver turns true on the
/// first signal.
pub fn signals(rt: &Runtime) -> Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let _guard = rt.enter();
    crate::shutdown::on_signals(Arc::new(tx)).context("installing signal handlers")?;
    Ok(rx)
}

/// Resolves when `stop` turns true (never, if its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
