//! The router's secret: a key that makes what the router mints verifiable as
//! its own. A branch it puts in its Via carries a tag of the key over the
//! branch's other parts, so a stray 2xx is forwarded only when its top Via is
//! really the router's; a Record-Route it inserts carries a tag over the
//! dialog's Call-ID, so an in-dialog request routed by it can be told from a
//! forged one that only names the router.
//!
//! The key is `[sip] secret` when configured (the same on every router of a
//! fleet, and across restarts), else random for the process's lifetime.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The prefix of every branch the router mints (RFC 3261 magic cookie, then `-`).
pub const BRANCH_PREFIX: &str = "z9hG4bK-";

/// The URI parameter of a Record-Route that carries the dialog tag.
pub const ROUTE_PARAM: &str = "exum";

/// The router's key.
pub struct Secret {
    key: hmac::Key,
    /// Random bits for tags that need to be unique, not verifiable.
    salt: u64,
    /// A keyed hash (SipHash, random keys) for tags that must be unguessable.
    unguessable: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The configured key, or a random one.
    pub fn new(configured: Option<&str>) -> Secret {
        let rng = SystemRandom::new();
        let mut salt = [0u8; 8];
        // The system's generator does not fail on Linux; a fixed salt only makes
        // To tags less unique across restarts.
        let _ = rng.fill(&mut salt);
        let key = match configured {
            Some(k) => hmac::Key::new(hmac::HMAC_SHA256, k.as_bytes()),
            None => hmac::Key::generate(hmac::HMAC_SHA256, &rng)
                .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, &std::process::id().to_be_bytes())),
        };
        Secret { key, salt: u64::from_be_bytes(salt), unguessable: std::collections::hash_map::RandomState::new() }
    }

    /// The To tag of the router's `n`th own response: unguessable by whoever
    /// did not receive it, so an ACK carrying it shows that its source
    /// receives at its address (see `overload.rs`).
    pub fn response_tag(&self, n: u64) -> String {
        use std::hash::BuildHasher as _;
        format!("{:x}", self.unguessable.hash_one(n ^ self.salt))
    }

    /// Random bits, fixed for the process's lifetime.
    pub fn salt(&self) -> u64 {
        self.salt
    }

    /// 64 bits of the key's HMAC over `parts`.
    fn tag(&self, parts: &[&[u8]]) -> u64 {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            ctx.update(&(p.len() as u32).to_be_bytes());
            ctx.update(p);
        }
        let sig = ctx.sign();
        let mut out = [0u8; 8];
        out.copy_from_slice(&sig.as_ref()[..8]);
        u64::from_be_bytes(out)
    }

    /// A branch: the prefix, the loop hash (RFC 3261 §16.6 step 8), a unique
    /// number and the tag of both: `z9hG4bK-<16 hex>-<hex>-<16 hex>`.
    pub fn branch(&self, loop_hash: u64, n: u64) -> String {
        let tag = self.tag(&[&loop_hash.to_be_bytes(), &n.to_be_bytes()]);
        format!("{BRANCH_PREFIX}{loop_hash:016x}-{n:x}-{tag:016x}")
    }

    /// Whether `branch` was minted with this key.
    pub fn is_ours(&self, branch: &str) -> bool {
        let Some(rest) = branch.strip_prefix(BRANCH_PREFIX) else { return false };
        let mut parts = rest.split('-');
        let (Some(h), Some(n), Some(t), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let parse = |s: &str| (s.len() <= 16).then(|| u64::from_str_radix(s, 16).ok()).flatten();
        match (parse(h), parse(n), parse(t)) {
            (Some(h), Some(n), Some(t)) => self.tag(&[&h.to_be_bytes(), &n.to_be_bytes()]) == t,
            _ => false,
        }
    }

    /// The tag a Record-Route carries for the dialog of `call_id`.
    pub fn dialog_tag(&self, call_id: &str) -> String {
        format!("{:016x}", self.tag(&[b"dialog", call_id.as_bytes()]))
    }

    /// Whether `tag` is the dialog tag of `call_id`.
    pub fn is_dialog_tag(&self, call_id: &str, tag: &str) -> bool {
        tag.len() == 16 && u64::from_str_radix(tag, 16).is_ok_and(|t| t == self.tag(&[b"dialog", call_id.as_bytes()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_verify_with_their_key_only() {
        let a = Secret::new(None);
        let b = Secret::new(None);
        let branch = a.branch(0x1234, 7);
        assert!(branch.starts_with("z9hG4bK-0000000000001234-7-"), "{branch}");
        assert!(a.is_ours(&branch));
        assert!(!b.is_ours(&branch), "another router's key");
        let forged = branch.replace("-7-", "-8-");
        assert!(!a.is_ours(&forged), "another number with the same tag");
        for junk in ["z9hG4bK-1", "z9hG4bK-", "z9hG4bK-1-2-3-4", "z9hG4bKabc", "z9hG4bK-x-y-z"] {
            assert!(!a.is_ours(junk), "{junk}");
        }
    }

    #[test]
    fn a_configured_key_is_the_same_across_instances() {
        let a = Secret::new(Some("a shared fleet secret"));
        let b = Secret::new(Some("a shared fleet secret"));
        assert!(b.is_ours(&a.branch(1, 2)));
        let tag = a.dialog_tag("call-1@host");
        assert!(b.is_dialog_tag("call-1@host", &tag));
        assert!(!b.is_dialog_tag("call-2@host", &tag), "another dialog");
        assert!(!Secret::new(Some("another")).is_dialog_tag("call-1@host", &tag));
    }
}
