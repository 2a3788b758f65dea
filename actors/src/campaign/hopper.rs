//! The hopper: a campaign's dialable contacts, next first. A contact waits until its due
//! time (a retry delay, a callback, the opening of its calling window); among the due ones
//! the highest priority goes first, then the longest due, then the lowest id.

use chrono::{DateTime, Utc};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use waihu_storage::ContactId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub contact: ContactId,
    pub priority: i32,
    pub due: DateTime<Utc>,
}

/// Order among due entries: priority high first, then due early, then id low.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ready(Entry);

impl Ord for Ready {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0
            .priority
            .cmp(&o.0.priority)
            .then_with(|| o.0.due.cmp(&self.0.due))
            .then_with(|| o.0.contact.cmp(&self.0.contact))
    }
}

impl PartialOrd for Ready {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Debug, Default)]
pub struct Hopper {
    waiting: BinaryHeap<Reverse<(DateTime<Utc>, ContactId, i32)>>,
    ready: BinaryHeap<Ready>,
    /// Contacts in the hopper (each at most once), with the due time of their live entry;
    /// heap entries that do not match (a removed or moved contact) are skipped.
    present: HashMap<ContactId, DateTime<Utc>>,
}

impl Hopper {
    /// A hopper holding `entries` (the first of each contact), in linear time: a campaign
    /// loading a big list does not pay a heap push per contact, nor a mass move on its
    /// first pop.
    pub fn load(entries: impl IntoIterator<Item = Entry>, now: DateTime<Utc>) -> Hopper {
        let mut h = Hopper::default();
        let (mut ready, mut waiting) = (Vec::new(), Vec::new());
        for e in entries {
            if h.present.contains_key(&e.contact) {
                continue;
            }
            h.present.insert(e.contact, e.due);
            if e.due <= now {
                ready.push(Ready(e));
            } else {
                waiting.push(Reverse((e.due, e.contact, e.priority)));
            }
        }
        h.ready = BinaryHeap::from(ready);
        h.waiting = BinaryHeap::from(waiting);
        h
    }

    /// Everything in the hopper, in no order.
    pub fn into_entries(self) -> impl Iterator<Item = Entry> {
        let waiting =
            self.waiting.into_iter().map(|Reverse((due, contact, priority))| Entry { contact, priority, due });
        self.ready.into_iter().map(|r| r.0).chain(waiting)
    }

    /// Adds a contact; false (and nothing changes) if it is already in.
    pub fn push(&mut self, e: Entry) -> bool {
        if self.present.contains_key(&e.contact) {
            return false;
        }
        self.present.insert(e.contact, e.due);
        self.waiting.push(Reverse((e.due, e.contact, e.priority)));
        true
    }

    /// Takes a contact out (its heap entry is skipped when it surfaces).
    pub fn remove(&mut self, contact: ContactId) -> bool {
        self.present.remove(&contact).is_some()
    }

    fn live(&self, contact: ContactId, due: DateTime<Utc>) -> bool {
        self.present.get(&contact) == Some(&due)
    }

    /// The next due contact at `now`, taken out.
    pub fn pop(&mut self, now: DateTime<Utc>) -> Option<Entry> {
        while let Some(Reverse((due, contact, priority))) = self.waiting.peek().copied() {
            if due > now {
                break;
            }
            self.waiting.pop();
            if self.live(contact, due) {
                self.ready.push(Ready(Entry { contact, priority, due }));
            }
        }
        while let Some(Ready(e)) = self.ready.pop() {
            if self.live(e.contact, e.due) {
                self.present.remove(&e.contact);
                return Some(e);
            }
        }
        None
    }

    /// When the next waiting contact falls due (None: some are due now, or none wait).
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        if !self.ready.is_empty() {
            return None;
        }
        self.waiting.peek().map(|Reverse((due, ..))| *due)
    }

    /// How many are due at `now` (a full scan: for status, not the dial path).
    pub fn due_count(&self, now: DateTime<Utc>) -> usize {
        self.ready.len() + self.waiting.iter().filter(|Reverse((due, ..))| *due <= now).count()
    }

    pub fn len(&self) -> usize {
        self.present.len()
    }

    pub fn is_empty(&self) -> bool {
        self.present.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-07-15T14:00:00Z").expect("t").with_timezone(&Utc) + Duration::minutes(min)
    }

    #[test]
    fn due_contacts_go_by_priority_then_age_and_later_ones_wait() {
        let mut h = Hopper::default();
        h.push(Entry { contact: 1, priority: 0, due: t(0) });
        h.push(Entry { contact: 2, priority: 5, due: t(2) });
        h.push(Entry { contact: 3, priority: 5, due: t(1) });
        h.push(Entry { contact: 4, priority: 9, due: t(30) });
        assert!(!h.push(Entry { contact: 1, priority: 9, due: t(0) }), "once only");
        let order: Vec<ContactId> = std::iter::from_fn(|| h.pop(t(5)).map(|e| e.contact)).collect();
        assert_eq!(order, vec![3, 2, 1], "4 is not due yet");
        assert_eq!(h.next_due(), Some(t(30)));
        assert_eq!(h.pop(t(30)).map(|e| e.contact), Some(4));
        assert!(h.is_empty());
    }

    #[test]
    fn a_loaded_hopper_orders_as_one_filled_by_pushes() {
        let entries: Vec<Entry> =
            (0..200u64).map(|i| Entry { contact: i, priority: (i % 7) as i32, due: t((i % 13) as i64 - 6) }).collect();
        let mut pushed = Hopper::default();
        for e in &entries {
            pushed.push(*e);
        }
        let mut loaded = Hopper::load(entries.iter().copied().chain([entries[3]]), t(0));
        assert_eq!(loaded.len(), 200, "a contact once");
        for now in [t(0), t(3), t(10)] {
            let a: Vec<ContactId> = std::iter::from_fn(|| pushed.pop(now).map(|e| e.contact)).collect();
            let b: Vec<ContactId> = std::iter::from_fn(|| loaded.pop(now).map(|e| e.contact)).collect();
            assert_eq!(a, b, "at {now}");
        }
        assert!(loaded.is_empty() && pushed.is_empty());
    }

    #[test]
    fn a_removed_contact_can_come_back_at_another_time() {
        let mut h = Hopper::default();
        h.push(Entry { contact: 1, priority: 0, due: t(0) });
        h.push(Entry { contact: 2, priority: 0, due: t(1) });
        assert!(h.remove(1));
        assert!(h.push(Entry { contact: 1, priority: 0, due: t(20) }), "moved to later");
        assert_eq!(h.pop(t(5)).map(|e| e.contact), Some(2), "its old entry is skipped");
        assert_eq!(h.pop(t(5)), None);
        assert_eq!(h.pop(t(20)).map(|e| (e.contact, e.due)), Some((1, t(20))));
        assert!(h.is_empty());
    }
}
