//! The registrar as the SIP agent runs it: the pure [`Registrar`] behind a lock, shared by
//! the stack's request loop (REGISTER) and the control plane (credentials, lookups), and a
//! task that expires bindings on time. Changes go to every subscriber.
#![allow(clippy::disallowed_methods)] // the shell reads the clock; the registrar never does

use crate::registrar::{Event, Register, Registrar, RegistrarConfig, Reply};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug)]
pub struct Registry {
    state: Mutex<Registrar>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Event>>>,
    /// Wakes the expiry task when a REGISTER changes the next expiry.
    changed: tokio::sync::Notify,
}

/// 16 random bytes from the standard library's per-process hash keys (no extra crate).
fn random_secret() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

impl Registry {
    /// Starts the registry and its expiry task on the current tokio runtime.
    pub fn start(mut cfg: RegistrarConfig) -> Arc<Registry> {
        if cfg.secret == [0; 16] {
            cfg.secret = random_secret();
        }
        let r = Arc::new(Registry {
            state: Mutex::new(Registrar::new(cfg, Instant::now())),
            subscribers: Mutex::new(Vec::new()),
            changed: tokio::sync::Notify::new(),
        });
        // The task holds the registry; once it is the only holder left (checked at least
        // once a minute) it ends.
        let task = r.clone();
        tokio::spawn(async move {
            while Arc::strong_count(&task) > 1 {
                let next = task.lock().poll_timeout();
                let wait = next
                    .map_or(Duration::from_secs(60), |t| t.saturating_duration_since(Instant::now()))
                    .min(Duration::from_secs(60));
                tokio::select! {
                    _ = tokio::time::sleep(wait + Duration::from_millis(1)) => {}
                    _ = task.changed.notified() => {}
                }
                task.lock().handle_timeout(Instant::now());
                task.publish();
            }
        });
        r
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registrar> {
        // A panic while holding the lock is a bug elsewhere; the registrar's data stays
        // consistent (every method finishes its update before returning).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn realm(&self) -> String {
        self.lock().realm().to_string()
    }

    /// Adds or replaces a user's credentials (HA1, see [`crate::registrar::ha1`]).
    pub fn set_user(&self, user: &str, ha1: &str) {
        self.lock().set_user(user, ha1);
    }

    pub fn remove_user(&self, user: &str) {
        self.lock().remove_user(user);
        self.publish();
    }

    /// The user's live contacts, newest first.
    pub fn contacts(&self, user: &str) -> Vec<String> {
        self.lock().contacts(user)
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    pub(crate) fn register(&self, req: &Register) -> Reply {
        let reply = self.lock().handle_register(req, Instant::now());
        self.changed.notify_one();
        self.publish();
        reply
    }

    fn publish(&self) {
        let events: Vec<Event> = std::iter::from_fn(|| self.lock().poll_output()).collect();
        if events.is_empty() {
            return;
        }
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| events.iter().all(|e| s.send(e.clone()).is_ok()));
    }
}
