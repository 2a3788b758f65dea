//! The registrar for agents' phones, pure: REGISTER with digest auth (RFC 3261 §22, RFC
//! 2617 MD5 with `qop=auth`), bindings that expire unless refreshed, un-REGISTER. The
//! adapter in [`crate::agent`] parses the request into a [`Register`] and sends the
//! [`Reply`] back; everything decided is here, in simulated time.
//!
//! Credentials are held as HA1 = MD5(user:realm:password), never as the password: that is
//! what a digest check needs, and what the store keeps. Nonces are stateless: the time they
//! were made and a keyed hash of it, so any nonce we made is recognised and an old one is
//! answered `stale=true` (the phone re-authenticates without asking its user).

use md5::{Digest, Md5};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    pub realm: String,
    /// Bindings asking for less than this get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer requests are cut to this.
    pub max_expires: u32,
    /// When a REGISTER names no expiry.
    pub default_expires: u32,
    /// A nonce older than this is stale.
    pub nonce_life: Duration,
    /// Keys the nonces (random per process).
    pub secret: [u8; 16],
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            realm: "waihu".into(),
            min_expires: 30,
            max_expires: 3600,
            default_expires: 3600,
            nonce_life: Duration::from_secs(300),
            secret: [0; 16],
        }
    }
}

/// MD5 as lowercase hex.
pub fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// HA1 for a user's password, as the store keeps it.
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    md5_hex(&[user, realm, password])
}

/// One Contact of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSpec {
    pub uri: String,
    /// Its `;expires=` parameter.
    pub expires: Option<u32>,
}

/// A REGISTER, as the adapter parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The To header's user: whose phone this is.
    pub user: String,
    pub request_uri: String,
    /// The Authorization header's value, if any.
    pub authorization: Option<String>,
    pub contacts: Vec<ContactSpec>,
    /// `Contact: *` (remove every binding; only with Expires: 0).
    pub wildcard: bool,
    /// The Expires header.
    pub expires: Option<u32>,
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 401 with this WWW-Authenticate value.
    Challenge(String),
    /// 403: a wrong password or an unknown user.
    Forbidden,
    /// 423 with Min-Expires.
    IntervalTooBrief(u32),
    /// 400 with a reason.
    Bad(&'static str),
    /// 200 with the user's bindings now: (contact, seconds left).
    Ok(Vec<(String, u32)>),
}

/// What changed, for the control plane (an agent's phone came or went).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Registered {
        user: String,
        contact: String,
    },
    /// The phone removed its last binding.
    Unregistered {
        user: String,
    },
    /// The last binding expired without a refresh.
    Expired {
        user: String,
    },
}

/// The user part of a `sip:`/`sips:` URI inside a header value (`"A" <sip:u@h>;tag=x`).
fn uri_user(v: &str) -> Option<&str> {
    let i = v.find("sip:").map(|i| i + 4).or_else(|| v.find("sips:").map(|i| i + 5))?;
    let rest = &v[i..];
    let at = rest.find('@')?;
    let user = &rest[..at];
    (!user.is_empty() && !user.contains(['>', ';', ' '])).then_some(user)
}

/// Splits a Contact value into its entries (commas inside `<…>` or quotes do not split).
fn split_contacts(v: &str) -> Vec<&str> {
    let (mut out, mut start, mut depth, mut quoted) = (Vec::new(), 0, 0i32, false);
    for (i, c) in v.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                out.push(v[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(v[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// A Contact entry's `;expires=` parameter (after the `>` when the URI is bracketed).
fn contact_expires(entry: &str) -> Option<u32> {
    let params = match entry.rfind('>') {
        Some(i) => &entry[i + 1..],
        None => entry.find(';').map_or("", |i| &entry[i..]),
    };
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("expires").then(|| v.trim().parse().ok()).flatten()
    })
}

impl Register {
    /// Reads a REGISTER from its request URI and its headers (name, value), as any SIP
    /// stack hands them over. Compact header names are understood.
    pub fn parse<'a>(
        request_uri: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Register, &'static str> {
        let (mut user, mut authorization, mut contacts, mut wildcard, mut expires) =
            (None, None, Vec::new(), false, None);
        for (name, value) in headers {
            match name.to_ascii_lowercase().as_str() {
                "to" | "t" => user = Some(uri_user(value).ok_or("the To header has no user")?.to_string()),
                "authorization" => authorization = Some(value.to_string()),
                "contact" | "m" => {
                    for entry in split_contacts(value) {
                        if entry == "*" {
                            wildcard = true;
                        } else {
                            // A bracketed URI keeps its own parameters; a bare one ends
                            // at the first `;`.
                            let uri = match (entry.find('<'), entry.rfind('>')) {
                                (Some(a), Some(b)) if a < b => &entry[a..=b],
                                _ => entry.split(';').next().unwrap_or(entry).trim(),
                            };
                            contacts.push(ContactSpec { uri: uri.to_string(), expires: contact_expires(entry) });
                        }
                    }
                }
                "expires" => expires = Some(value.trim().parse().map_err(|_| "the Expires header is not a number")?),
                _ => {}
            }
        }
        Ok(Register {
            user: user.ok_or("no To header")?,
            request_uri: request_uri.to_string(),
            authorization,
            contacts,
            wildcard,
            expires,
        })
    }
}

/// The URI inside a binding's contact (`<sip:u@h:p;ob>` → `sip:u@h:p;ob`).
pub fn contact_uri(contact: &str) -> &str {
    contact.trim().trim_start_matches('<').trim_end_matches('>')
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    contact: String,
    expires: Instant,
}

#[derive(Debug)]
pub struct Registrar {
    cfg: RegistrarConfig,
    epoch: Instant,
    /// user → HA1.
    users: HashMap<String, String>,
    bindings: HashMap<String, Vec<Binding>>,
    /// The highest nonce count accepted per nonce (a replayed Authorization has no higher
    /// one); entries go once their nonce is stale.
    counts: HashMap<String, u32>,
    /// Makes every challenge's nonce unique (two phones challenged in one second must not
    /// share a nonce, or the second one's first count looks like a replay).
    seq: std::cell::Cell<u64>,
    out: VecDeque<Event>,
}

/// The fields of a `Digest` Authorization header.
fn digest_params(v: &str) -> Option<HashMap<String, String>> {
    let rest = v.trim().strip_prefix("Digest").or_else(|| v.trim().strip_prefix("digest"))?;
    let mut out = HashMap::new();
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_ascii_lowercase();
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(q) = s.strip_prefix('"') {
            let end = q.find('"')?;
            value = q[..end].to_string();
            s = &q[end + 1..];
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = s[..end].trim().to_string();
            s = &s[end..];
        }
        out.insert(key, value);
        s = s.trim_start().strip_prefix(',').unwrap_or(s).trim_start();
    }
    Some(out)
}

impl Registrar {
    pub fn new(cfg: RegistrarConfig, now: Instant) -> Self {
        Registrar {
            cfg,
            epoch: now,
            users: HashMap::new(),
            bindings: HashMap::new(),
            counts: HashMap::new(),
            seq: std::cell::Cell::new(0),
            out: VecDeque::new(),
        }
    }

    pub fn realm(&self) -> &str {
        &self.cfg.realm
    }

    /// Adds or replaces a user's credentials (HA1 for this realm).
    pub fn set_user(&mut self, user: &str, ha1: &str) {
        self.users.insert(user.to_string(), ha1.to_ascii_lowercase());
    }

    /// Removes a user and their bindings.
    pub fn remove_user(&mut self, user: &str) {
        self.users.remove(user);
        if self.bindings.remove(user).is_some() {
            self.out.push_back(Event::Unregistered { user: user.into() });
        }
    }

    /// A user's live contacts, newest first.
    pub fn contacts(&self, user: &str) -> Vec<String> {
        let mut b: Vec<&Binding> = self.bindings.get(user).map(|v| v.iter().collect()).unwrap_or_default();
        b.sort_by_key(|b| std::cmp::Reverse(b.expires));
        b.into_iter().map(|b| b.contact.clone()).collect()
    }

    /// `<time hex>.<sequence hex><keyed hash of both, 16 hex>`.
    fn nonce(&self, now: Instant) -> String {
        let t = now.saturating_duration_since(self.epoch).as_secs();
        let n = self.seq.get().wrapping_add(1);
        self.seq.set(n);
        let key: String = self.cfg.secret.iter().map(|b| format!("{b:02x}")).collect();
        let body = format!("{t:x}.{n:x}");
        format!("{body}{}", &md5_hex(&[&key, &body])[..16])
    }

    /// Whether `nonce` is ours, and whether it is still fresh.
    fn check_nonce(&self, nonce: &str, now: Instant) -> Option<bool> {
        if nonce.len() <= 16 || !nonce.is_ascii() {
            return None;
        }
        let (body, mac) = nonce.split_at(nonce.len() - 16);
        let key: String = self.cfg.secret.iter().map(|b| format!("{b:02x}")).collect();
        if md5_hex(&[&key, body])[..16] != *mac {
            return None;
        }
        let t = u64::from_str_radix(body.split('.').next()?, 16).ok()?;
        let age = now.saturating_duration_since(self.epoch).as_secs().saturating_sub(t);
        Some(Duration::from_secs(age) < self.cfg.nonce_life)
    }

    fn challenge(&self, now: Instant, stale: bool) -> Reply {
        let stale = if stale { ", stale=true" } else { "" };
        Reply::Challenge(format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"{stale}",
            self.cfg.realm,
            self.nonce(now)
        ))
    }

    /// Answers one REGISTER.
    pub fn handle_register(&mut self, req: &Register, now: Instant) -> Reply {
        let Some(auth) = req.authorization.as_deref() else {
            return self.challenge(now, false);
        };
        let Some(p) = digest_params(auth) else { return Reply::Bad("malformed Authorization header") };
        let field = |k: &str| p.get(k).map(String::as_str);
        let (Some(username), Some(nonce), Some(uri), Some(response)) =
            (field("username"), field("nonce"), field("uri"), field("response"))
        else {
            return Reply::Bad("Authorization lacks username, nonce, uri or response");
        };
        if field("realm") != Some(self.cfg.realm.as_str()) {
            return self.challenge(now, false);
        }
        if field("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("md5")) {
            return self.challenge(now, false);
        }
        let fresh = match self.check_nonce(nonce, now) {
            None => return self.challenge(now, false),
            Some(f) => f,
        };
        let Some(ha1) = self.users.get(username) else { return Reply::Forbidden };
        let ha2 = md5_hex(&["REGISTER", uri]);
        let expected = match field("qop") {
            Some(qop) if qop.eq_ignore_ascii_case("auth") => {
                let (Some(nc), Some(cnonce)) = (field("nc"), field("cnonce")) else {
                    return Reply::Bad("qop=auth without nc or cnonce");
                };
                md5_hex(&[ha1, nonce, nc, cnonce, qop, &ha2])
            }
            Some(_) => return Reply::Bad("unsupported qop"),
            None => md5_hex(&[ha1, nonce, &ha2]),
        };
        if !expected.eq_ignore_ascii_case(response) {
            return Reply::Forbidden;
        }
        if !fresh {
            return self.challenge(now, true);
        }
        // Replay: each nonce count is good once (without qop, the nonce itself is).
        let nc = field("nc").and_then(|n| u32::from_str_radix(n, 16).ok()).unwrap_or(1);
        if self.counts.get(nonce).is_some_and(|&last| nc <= last) {
            return self.challenge(now, false);
        }
        if self.counts.len() >= 100_000 {
            let (epoch, life) = (self.epoch, self.cfg.nonce_life);
            self.counts.retain(|n, _| {
                let t = n.split('.').next().and_then(|t| u64::from_str_radix(t, 16).ok());
                t.is_some_and(|t| {
                    Duration::from_secs(now.saturating_duration_since(epoch).as_secs().saturating_sub(t)) < life
                })
            });
        }
        self.counts.insert(nonce.to_string(), nc);
        // The credentials are the To user's own: agent1 cannot register agent2's phone.
        if username != req.user {
            return Reply::Forbidden;
        }
        self.apply(req, now)
    }

    fn apply(&mut self, req: &Register, now: Instant) -> Reply {
        let user = req.user.clone();
        let had = self.bindings.get(&user).is_some_and(|b| !b.is_empty());
        if req.wildcard {
            if req.expires != Some(0) || !req.contacts.is_empty() {
                return Reply::Bad("Contact: * needs Expires: 0 and no other contact");
            }
            self.bindings.remove(&user);
            if had {
                self.out.push_back(Event::Unregistered { user });
            }
            return Reply::Ok(Vec::new());
        }
        let mut added = Vec::new();
        for c in &req.contacts {
            let asked = c.expires.or(req.expires).unwrap_or(self.cfg.default_expires);
            if asked != 0 && asked < self.cfg.min_expires {
                return Reply::IntervalTooBrief(self.cfg.min_expires);
            }
        }
        let list = self.bindings.entry(user.clone()).or_default();
        for c in &req.contacts {
            let asked = c.expires.or(req.expires).unwrap_or(self.cfg.default_expires);
            list.retain(|b| b.contact != c.uri);
            if asked > 0 {
                let secs = asked.min(self.cfg.max_expires);
                list.push(Binding { contact: c.uri.clone(), expires: now + Duration::from_secs(secs as u64) });
                added.push(c.uri.clone());
            }
        }
        let left: Vec<(String, u32)> = list
            .iter()
            .map(|b| (b.contact.clone(), b.expires.saturating_duration_since(now).as_secs() as u32))
            .collect();
        if list.is_empty() {
            self.bindings.remove(&user);
            if had {
                self.out.push_back(Event::Unregistered { user });
            }
        } else {
            for contact in added {
                self.out.push_back(Event::Registered { user: user.clone(), contact });
            }
        }
        Reply::Ok(left)
    }

    /// Drops expired bindings; a user left with none is [`Event::Expired`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for (user, list) in self.bindings.iter_mut() {
            list.retain(|b| b.expires > now);
            if list.is_empty() {
                gone.push(user.clone());
            }
        }
        gone.sort();
        for user in gone {
            self.bindings.remove(&user);
            self.out.push_back(Event::Expired { user });
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bindings.values().flatten().map(|b| b.expires).min()
    }

    pub fn poll_output(&mut self) -> Option<Event> {
        self.out.pop_front()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, clippy::unwrap_used)] // tests pick an origin; unwraps fail the test
mod tests {
    use super::*;

    #[test]
    fn rfc2617_digest_vector() {
        // RFC 2617 §3.5, with the method and URI it uses.
        let ha1 = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        let ha2 = md5_hex(&["GET", "/dir/index.html"]);
        let r = md5_hex(&[&ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b", "auth", &ha2]);
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    /// What a phone computes from a challenge (nonce count 1).
    fn answer(challenge: &str, user: &str, pass: &str, realm: &str) -> String {
        answer_nc(challenge, user, pass, realm, 1)
    }

    fn answer_nc(challenge: &str, user: &str, pass: &str, realm: &str, nc: u32) -> String {
        let p = digest_params(challenge).unwrap();
        let nonce = &p["nonce"];
        let uri = "sip:127.0.0.1:5090";
        let nc = format!("{nc:08x}");
        let ha2 = md5_hex(&["REGISTER", uri]);
        let resp = md5_hex(&[&ha1(user, realm, pass), nonce, &nc, "abc", "auth", &ha2]);
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", cnonce=\"abc\", qop=auth, nc={nc}, algorithm=MD5"
        )
    }

    fn reg(user: &str, auth: Option<String>, expires: Option<u32>) -> Register {
        Register {
            user: user.into(),
            request_uri: "sip:127.0.0.1:5090".into(),
            authorization: auth,
            contacts: vec![ContactSpec { uri: format!("<sip:{user}@127.0.0.1:5070>"), expires }],
            wildcard: false,
            expires: None,
        }
    }

    fn registrar(t0: Instant) -> Registrar {
        let mut r = Registrar::new(RegistrarConfig { secret: [7; 16], ..RegistrarConfig::default() }, t0);
        r.set_user("agent1", &ha1("agent1", "waihu", "secret"));
        r
    }

    fn challenge_of(reply: Reply) -> String {
        match reply {
            Reply::Challenge(c) => c,
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    #[test]
    fn a_phone_registers_after_the_challenge_and_expires_unless_refreshed() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let c = challenge_of(r.handle_register(&reg("agent1", None, Some(60)), t0));
        assert!(c.contains("qop=\"auth\"") && c.contains("realm=\"waihu\""), "{c}");
        let ok = r.handle_register(&reg("agent1", Some(answer(&c, "agent1", "secret", "waihu")), Some(60)), t0);
        assert_eq!(ok, Reply::Ok(vec![("<sip:agent1@127.0.0.1:5070>".into(), 60)]));
        assert_eq!(
            r.poll_output(),
            Some(Event::Registered { user: "agent1".into(), contact: "<sip:agent1@127.0.0.1:5070>".into() })
        );
        assert_eq!(r.contacts("agent1").len(), 1);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        r.handle_timeout(t0 + Duration::from_secs(59));
        assert_eq!(r.poll_output(), None);
        r.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(r.poll_output(), Some(Event::Expired { user: "agent1".into() }));
        assert!(r.contacts("agent1").is_empty());
    }

    #[test]
    fn a_wrong_password_or_someone_elses_aor_is_forbidden() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        r.set_user("agent2", &ha1("agent2", "waihu", "other"));
        let c = challenge_of(r.handle_register(&reg("agent1", None, None), t0));
        let wrong = answer(&c, "agent1", "guess", "waihu");
        assert_eq!(r.handle_register(&reg("agent1", Some(wrong), None), t0), Reply::Forbidden);
        let unknown = answer(&c, "nobody", "x", "waihu");
        assert_eq!(r.handle_register(&reg("nobody", Some(unknown), None), t0), Reply::Forbidden);
        let agent2 = answer(&c, "agent2", "other", "waihu");
        assert_eq!(r.handle_register(&reg("agent1", Some(agent2), None), t0), Reply::Forbidden);
        assert!(r.contacts("agent1").is_empty());
    }

    #[test]
    fn an_old_nonce_is_stale_and_a_forged_one_is_challenged_afresh() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let c = challenge_of(r.handle_register(&reg("agent1", None, None), t0));
        let later = t0 + Duration::from_secs(301);
        let stale =
            challenge_of(r.handle_register(&reg("agent1", Some(answer(&c, "agent1", "secret", "waihu")), None), later));
        assert!(stale.contains("stale=true"), "{stale}");
        // The same time with another mac: not a nonce we made.
        let nonce = digest_params(&c).unwrap()["nonce"].clone();
        let last = if nonce.ends_with('0') { "1" } else { "0" };
        let forged = c.replace(&nonce, &format!("{}{last}", &nonce[..nonce.len() - 1]));
        let again = challenge_of(
            r.handle_register(&reg("agent1", Some(answer(&forged, "agent1", "secret", "waihu")), None), t0),
        );
        assert!(!again.contains("stale"), "{again}");
    }

    #[test]
    fn two_phones_challenged_in_one_second_get_different_nonces() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        r.set_user("agent2", &ha1("agent2", "waihu", "two"));
        let c1 = challenge_of(r.handle_register(&reg("agent1", None, None), t0));
        let c2 = challenge_of(r.handle_register(&reg("agent2", None, None), t0));
        assert_ne!(digest_params(&c1).unwrap()["nonce"], digest_params(&c2).unwrap()["nonce"]);
        assert!(matches!(
            r.handle_register(&reg("agent1", Some(answer(&c1, "agent1", "secret", "waihu")), None), t0),
            Reply::Ok(_)
        ));
        assert!(matches!(
            r.handle_register(&reg("agent2", Some(answer(&c2, "agent2", "two", "waihu")), None), t0),
            Reply::Ok(_)
        ));
    }

    #[test]
    fn a_replayed_authorization_is_challenged() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let c = challenge_of(r.handle_register(&reg("agent1", None, None), t0));
        let auth = answer(&c, "agent1", "secret", "waihu");
        assert!(matches!(r.handle_register(&reg("agent1", Some(auth.clone()), None), t0), Reply::Ok(_)));
        // The same header again (a captured REGISTER, another Contact): not accepted.
        let mut evil = reg("agent1", Some(auth), None);
        evil.contacts[0].uri = "<sip:agent1@203.0.113.9:5060>".into();
        assert!(matches!(r.handle_register(&evil, t0), Reply::Challenge(_)));
        assert_eq!(r.contacts("agent1"), ["<sip:agent1@127.0.0.1:5070>"]);
    }

    #[test]
    fn unregister_and_interval_rules() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let c = challenge_of(r.handle_register(&reg("agent1", None, None), t0));
        // A phone counts its uses of the nonce up (nc), as RFC 2617 says.
        let n = std::cell::Cell::new(0u32);
        let auth = || {
            n.set(n.get() + 1);
            Some(answer_nc(&c, "agent1", "secret", "waihu", n.get()))
        };
        assert_eq!(r.handle_register(&reg("agent1", auth(), Some(5)), t0), Reply::IntervalTooBrief(30));
        assert!(matches!(r.handle_register(&reg("agent1", auth(), Some(99_999)), t0), Reply::Ok(v) if v[0].1 == 3600));
        r.poll_output();
        assert_eq!(r.handle_register(&reg("agent1", auth(), Some(0)), t0), Reply::Ok(vec![]));
        assert_eq!(r.poll_output(), Some(Event::Unregistered { user: "agent1".into() }));
        let mut star = reg("agent1", auth(), None);
        star.contacts.clear();
        star.wildcard = true;
        assert_eq!(r.handle_register(&star, t0), Reply::Bad("Contact: * needs Expires: 0 and no other contact"));
        star.expires = Some(0);
        star.authorization = auth();
        assert_eq!(r.handle_register(&star, t0), Reply::Ok(vec![]));
    }

    #[test]
    fn parses_baresips_register() {
        let r = Register::parse(
            "sip:127.0.0.1:5090",
            [
                ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport"),
                ("To", "<sip:agent1@127.0.0.1:5090>"),
                ("From", "<sip:agent1@127.0.0.1:5090>;tag=abc"),
                ("Contact", "<sip:agent1-0x55f1@127.0.0.1:5070>;expires=60, \"B, c\" <sip:x@h;lr>"),
                ("Expires", "120"),
            ],
        )
        .unwrap();
        assert_eq!(r.user, "agent1");
        assert_eq!(
            r.contacts,
            [
                ContactSpec { uri: "<sip:agent1-0x55f1@127.0.0.1:5070>".into(), expires: Some(60) },
                ContactSpec { uri: "<sip:x@h;lr>".into(), expires: None },
            ]
        );
        assert_eq!((r.expires, r.wildcard), (Some(120), false));
        assert_eq!(contact_uri(&r.contacts[1].uri), "sip:x@h;lr");
        let star = Register::parse("sip:h", [("t", "<sip:a@h>"), ("m", "*"), ("Expires", "0")]).unwrap();
        assert!(star.wildcard && star.contacts.is_empty());
        assert!(Register::parse("sip:h", [("To", "<sip:h>")]).is_err());
        assert!(Register::parse("sip:h", [("To", "<sip:a@h>"), ("Expires", "soon")]).is_err());
    }

    #[test]
    fn malformed_authorization_never_panics() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        for a in [
            "",
            "Digest",
            "Digest username",
            "Digest username=\"a",
            "Basic abc",
            "Digest nonce=\"\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\"",
            "Digest ,,,=,",
        ] {
            let reply = r.handle_register(&reg("agent1", Some(a.into()), None), t0);
            assert!(matches!(reply, Reply::Bad(_) | Reply::Challenge(_)), "{a:?}: {reply:?}");
        }
    }
}
