//! Knowledge-base articles for agent assist: title, body, tags, and the campaigns they are
//! attached to (none: every campaign). The search index is built from them in memory
//! (`waihu_actors::assist::kb`).

use crate::codec::{decode, encode, Record};
use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};

pub type ArticleId = u64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Article {
    pub id: ArticleId,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    /// Campaign names; empty: shown for every campaign.
    pub campaigns: Vec<String>,
    pub updated_unix_ms: u64,
}

impl Record for Article {
    const TREE: &'static str = "articles";
    const VERSION: u8 = 1;
}

/// The longest title and body kept, in characters.
pub const MAX_TITLE: usize = 200;
pub const MAX_BODY: usize = 100_000;

impl Store {
    /// Adds an article (a new id) or replaces one (`a.id` of an existing article). Durable
    /// on return.
    pub fn put_article(&self, mut a: Article) -> Result<Article, StoreError> {
        if a.title.trim().is_empty() {
            return Err(StoreError::Refused("an article needs a title"));
        }
        if a.title.chars().count() > MAX_TITLE || a.body.chars().count() > MAX_BODY {
            return Err(StoreError::Refused("article too long (title 200, body 100,000 characters)"));
        }
        if a.id == 0 {
            a.id = self.db.generate_id()? + 1;
        } else if !self.articles.contains_key(a.id.to_be_bytes())? {
            return Err(StoreError::Refused("no such article"));
        }
        self.articles.insert(a.id.to_be_bytes(), encode(&a)?)?;
        self.flush()?;
        Ok(a)
    }

    pub fn article(&self, id: ArticleId) -> Result<Option<Article>, StoreError> {
        self.articles.get(id.to_be_bytes())?.map(|v| decode(&v)).transpose()
    }

    pub fn articles(&self) -> Result<Vec<Article>, StoreError> {
        self.articles.iter().map(|kv| decode(&kv?.1)).collect()
    }

    /// Removes an article; false when there was none. Durable on return.
    pub fn remove_article(&self, id: ArticleId) -> Result<bool, StoreError> {
        let had = self.articles.remove(id.to_be_bytes())?.is_some();
        self.flush()?;
        Ok(had)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeySource;

    #[test]
    fn articles_are_added_replaced_removed_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let key = || KeySource::Hex("11".repeat(32));
        let a = Article {
            id: 0,
            title: "宽带退订流程".into(),
            body: "客户要求退订宽带套餐时……".into(),
            tags: vec!["宽带".into()],
            campaigns: vec![],
            updated_unix_ms: 1,
        };
        let id = {
            let store = Store::open(dir.path(), key()).expect("open");
            let a = store.put_article(a.clone()).expect("added");
            assert!(a.id > 0);
            let b = store.put_article(Article { title: "Refunds".into(), ..a.clone() }).expect("replaced");
            assert_eq!(b.id, a.id);
            assert!(store.put_article(Article { id: 999_999, ..a.clone() }).is_err(), "no such article");
            assert!(store.put_article(Article { title: " ".into(), ..a.clone() }).is_err(), "no title");
            a.id
        };
        let store = Store::open(dir.path(), key()).expect("reopen");
        assert_eq!(store.article(id).expect("read").map(|a| a.title), Some("Refunds".into()));
        assert_eq!(store.articles().expect("read").len(), 1);
        assert!(store.remove_article(id).expect("removed"));
        assert!(!store.remove_article(id).expect("gone already"));
    }
}
