//! AMD review samples: the first seconds of a share of the calls AMD called machine, kept
//! for an operator to hear and judge. The audio is a person's voice, perhaps: it is sealed
//! like contacts' personal data. The operators' verdicts give the measured false-positive
//! rate the abandon rate counts.

use crate::codec::{decode, encode, Record};
use crate::contacts::key;
use crate::{CampaignId, Store, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredReview {
    campaign: CampaignId,
    attempt: u64,
    at_unix_ms: u64,
    sealed_wav: Vec<u8>,
    /// The operator's verdict: a person (AMD was wrong), or a machine.
    human: Option<bool>,
    reviewed_unix_ms: Option<u64>,
}

impl Record for StoredReview {
    const TREE: &'static str = "reviews";
    const VERSION: u8 = 1;
}

/// A review sample as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub campaign: CampaignId,
    pub attempt: u64,
    pub at_unix_ms: u64,
    /// 8 kHz WAV (the far end on the left channel).
    pub wav: Vec<u8>,
    pub human: Option<bool>,
    pub reviewed_unix_ms: Option<u64>,
}

/// How many samples a campaign has, how many were judged, and how many of those were people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReviewCounts {
    pub samples: u64,
    pub reviewed: u64,
    pub humans: u64,
}

fn aad(k: &[u8]) -> Vec<u8> {
    [b"review:".as_slice(), k].concat()
}

impl Store {
    /// Keeps a sample (through the group commit: [`crate::Write::Review`]).
    pub(crate) fn put_review(
        &self,
        campaign: CampaignId,
        attempt: u64,
        at_unix_ms: u64,
        wav: &[u8],
    ) -> Result<(), StoreError> {
        let k = key(campaign, attempt);
        let r = StoredReview {
            campaign,
            attempt,
            at_unix_ms,
            sealed_wav: self.sealer.seal(wav, &aad(&k))?,
            human: None,
            reviewed_unix_ms: None,
        };
        self.reviews.insert(k, encode(&r)?)?;
        Ok(())
    }

    fn open_review(&self, v: &[u8]) -> Result<Review, StoreError> {
        let r: StoredReview = decode(v)?;
        let wav = self.sealer.open(&r.sealed_wav, &aad(&key(r.campaign, r.attempt)))?;
        Ok(Review {
            campaign: r.campaign,
            attempt: r.attempt,
            at_unix_ms: r.at_unix_ms,
            wav,
            human: r.human,
            reviewed_unix_ms: r.reviewed_unix_ms,
        })
    }

    /// A campaign's samples, in attempt order.
    pub fn reviews(&self, campaign: CampaignId) -> Result<Vec<Review>, StoreError> {
        self.reviews.scan_prefix(campaign.to_be_bytes()).map(|kv| self.open_review(&kv?.1)).collect()
    }

    pub fn review(&self, campaign: CampaignId, attempt: u64) -> Result<Option<Review>, StoreError> {
        self.reviews.get(key(campaign, attempt))?.map(|v| self.open_review(&v)).transpose()
    }

    /// Records the operator's verdict on a sample (`human`: AMD was wrong). Durable on return.
    pub fn judge_review(
        &self,
        campaign: CampaignId,
        attempt: u64,
        human: bool,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        let k = key(campaign, attempt);
        let Some(v) = self.reviews.get(k)? else { return Err(StoreError::Refused("no such review sample")) };
        let mut r: StoredReview = decode(&v)?;
        r.human = Some(human);
        r.reviewed_unix_ms = Some(now_unix_ms);
        self.reviews.insert(k, encode(&r)?)?;
        self.flush()?;
        Ok(())
    }

    /// Counts without opening the audio.
    pub fn review_counts(&self, campaign: CampaignId) -> Result<ReviewCounts, StoreError> {
        let mut c = ReviewCounts::default();
        for kv in self.reviews.scan_prefix(campaign.to_be_bytes()) {
            let r: StoredReview = decode(&kv?.1)?;
            c.samples += 1;
            if let Some(h) = r.human {
                c.reviewed += 1;
                c.humans += u64::from(h);
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeySource, Write};

    #[test]
    fn samples_are_sealed_judged_counted_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let key = || KeySource::Hex("22".repeat(32));
        let wav = b"RIFF-a-voice-WAVE".to_vec();
        {
            let store = Store::open(dir.path(), key()).expect("open");
            store.submit(Write::Review { campaign: 3, attempt: 10, at_unix_ms: 1, wav: wav.clone() });
            store.submit(Write::Review { campaign: 3, attempt: 11, at_unix_ms: 2, wav: wav.clone() });
            store.durable().recv().expect("commit").expect("durable");
            store.judge_review(3, 10, true, 5).expect("judged");
            assert!(store.judge_review(3, 99, true, 5).is_err(), "no such sample");
        }
        let raw = std::fs::read_dir(dir.path()).expect("dir").count();
        assert!(raw > 0);
        let store = Store::open(dir.path(), key()).expect("reopen");
        assert_eq!(store.review_counts(3).expect("counts"), ReviewCounts { samples: 2, reviewed: 1, humans: 1 });
        let r = store.review(3, 10).expect("read").expect("there");
        assert_eq!((r.wav, r.human, r.reviewed_unix_ms), (wav, Some(true), Some(5)));
        assert_eq!(store.reviews(3).expect("list").len(), 2);
        assert!(store.reviews(4).expect("list").is_empty());
        drop(store);
        // Another key cannot open the audio.
        let other = Store::open(dir.path(), KeySource::Hex("33".repeat(32)));
        if let Ok(s) = other {
            assert!(s.review(3, 10).is_err(), "sealed under the store's key");
        }
    }
}
