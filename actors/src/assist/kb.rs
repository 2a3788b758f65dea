//! The knowledge base's search, pure: an in-memory inverted index over articles, ranked
//! by BM25 (title words count double). Text is cut into words by jieba in its search mode
//! (Chinese has no spaces: 信用卡分期 → 信用, 信用卡, 分期), lowercased, with a few
//! function words dropped and English plurals folded, so `宽带退订` finds an article on
//! 宽带套餐的退订 and `refunds` finds `refund`.

use jieba_rs::Jieba;
use std::collections::HashMap;
use std::sync::OnceLock;
use waihu_storage::{Article, ArticleId};

/// jieba with its built-in dictionary, loaded once (about 0.1-0.3 s).
fn jieba() -> &'static Jieba {
    static J: OnceLock<Jieba> = OnceLock::new();
    J.get_or_init(Jieba::new)
}

/// Words too common to rank by.
const STOP: &[&str] = &[
    "的", "了", "吗", "呢", "啊", "吧", "我", "你", "您", "是", "在", "和", "与", "或", "就", "都", "也", "要", "想",
    "怎么", "如何", "什么", "a", "an", "the", "of", "to", "is", "are", "and", "or", "i", "my", "you", "your", "how",
    "do", "does", "what", "can", "in", "on", "for", "it",
];

/// The words of `text`, for indexing and for queries alike.
pub fn terms(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    jieba()
        .cut_for_search(&lower, true)
        .into_iter()
        .map(|t| t.word)
        .filter(|w| w.chars().any(char::is_alphanumeric) && !STOP.contains(w))
        .map(fold)
        .collect()
}

/// English plurals and possessives to their stem (`plans` → `plan`, `customer's` →
/// `customer`); other words as they are.
fn fold(w: &str) -> String {
    let w = w.strip_suffix("'s").unwrap_or(w);
    let ascii = w.chars().all(|c| c.is_ascii_alphabetic());
    if ascii && w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        if let Some(stem) = w.strip_suffix("ies") {
            return format!("{stem}y");
        }
        return w[..w.len() - 1].to_string();
    }
    w.to_string()
}

#[derive(Debug, Clone)]
struct Doc {
    id: ArticleId,
    title: String,
    campaigns: Vec<String>,
    len: f32,
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: ArticleId,
    pub title: String,
    pub score: f32,
    /// The query's words the article has.
    pub matched: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Index {
    docs: Vec<Doc>,
    /// Word → (document, weighted count).
    postings: HashMap<String, Vec<(u32, f32)>>,
    avg_len: f32,
}

const K1: f32 = 1.2;
const B: f32 = 0.75;
const TITLE_WEIGHT: f32 = 2.0;

impl Index {
    pub fn build(articles: &[Article]) -> Index {
        let mut idx = Index::default();
        for a in articles {
            let n = idx.docs.len() as u32;
            let mut counts: HashMap<String, f32> = HashMap::new();
            let mut len = 0.0;
            for (text, w) in [(a.title.as_str(), TITLE_WEIGHT), (a.body.as_str(), 1.0)] {
                for t in terms(text) {
                    *counts.entry(t).or_default() += w;
                    len += w;
                }
            }
            for tag in &a.tags {
                for t in terms(tag) {
                    *counts.entry(t).or_default() += TITLE_WEIGHT;
                    len += TITLE_WEIGHT;
                }
            }
            for (t, c) in counts {
                idx.postings.entry(t).or_default().push((n, c));
            }
            idx.docs.push(Doc { id: a.id, title: a.title.clone(), campaigns: a.campaigns.clone(), len });
        }
        let total: f32 = idx.docs.iter().map(|d| d.len).sum();
        idx.avg_len = if idx.docs.is_empty() { 1.0 } else { (total / idx.docs.len() as f32).max(1.0) };
        idx
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The best `limit` articles for `query`, among those attached to `campaign` (or to
    /// every campaign); all articles when `campaign` is None.
    pub fn search(&self, query: &str, campaign: Option<&str>, limit: usize) -> Vec<Hit> {
        let mut q = terms(query);
        q.sort();
        q.dedup();
        let n = self.docs.len() as f32;
        let mut scores: HashMap<u32, (f32, Vec<String>)> = HashMap::new();
        for t in &q {
            let Some(list) = self.postings.get(t) else { continue };
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(d, tf) in list {
                let doc = &self.docs[d as usize];
                let norm = tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * doc.len / self.avg_len));
                let e = scores.entry(d).or_default();
                e.0 += idf * norm;
                e.1.push(t.clone());
            }
        }
        let visible = |d: &Doc| match campaign {
            None => true,
            Some(c) => d.campaigns.is_empty() || d.campaigns.iter().any(|x| x == c),
        };
        let mut hits: Vec<Hit> = scores
            .into_iter()
            .filter(|(d, _)| visible(&self.docs[*d as usize]))
            .map(|(d, (score, matched))| {
                let doc = &self.docs[d as usize];
                Hit { id: doc.id, title: doc.title.clone(), score, matched }
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        hits.truncate(limit);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(id: u64, title: &str, body: &str, campaigns: &[&str]) -> Article {
        Article {
            id,
            title: title.into(),
            body: body.into(),
            tags: vec![],
            campaigns: campaigns.iter().map(|c| c.to_string()).collect(),
            updated_unix_ms: 0,
        }
    }

    fn kb() -> Index {
        Index::build(&[
            article(1, "宽带套餐退订流程", "客户要求退订宽带套餐时，先核实身份，再说明违约金。", &[]),
            article(2, "信用卡分期还款", "分期手续费按月收取，提前还款需另付利息。", &["cards"]),
            article(
                3,
                "Cancelling a broadband plan",
                "When a customer cancels their broadband plan, verify identity first.",
                &[],
            ),
            article(4, "Refund policy", "Refunds are issued within 7 days to the original card.", &["cards"]),
            article(5, "手机流量包", "流量包按月自动续订，可随时退订。", &["mobile"]),
        ])
    }

    fn ids(hits: &[Hit]) -> Vec<u64> {
        hits.iter().map(|h| h.id).collect()
    }

    #[test]
    fn chinese_is_segmented_so_words_match_without_spaces() {
        assert!(terms("我想办理宽带套餐的退订手续").iter().any(|t| t == "退订"));
        let hits = kb().search("宽带退订", None, 3);
        assert_eq!(hits.first().map(|h| h.id), Some(1), "{hits:?}");
        assert!(hits[0].matched.contains(&"宽带".to_string()) && hits[0].matched.contains(&"退订".to_string()));
        // 退订 alone also finds the data-pack article, below the broadband one for 宽带退订.
        assert!(ids(&hits).contains(&5), "{hits:?}");
        // A compound word: 信用卡 is found by 信用卡 and by its part 分期.
        assert_eq!(ids(&kb().search("信用卡怎么分期", None, 1)), [2]);
    }

    #[test]
    fn english_words_match_across_plurals_and_case() {
        assert_eq!(ids(&kb().search("cancel BROADBAND plans", None, 1)), [3]);
        assert_eq!(ids(&kb().search("refund", None, 5)), [4]);
    }

    #[test]
    fn a_campaign_sees_its_own_articles_and_the_shared_ones() {
        assert_eq!(ids(&kb().search("退订", Some("cards"), 5)), [1], "the mobile article is not for cards");
        assert_eq!(ids(&kb().search("退订", Some("mobile"), 5)).len(), 2);
        assert!(kb().search("refund", Some("mobile"), 5).is_empty());
    }

    #[test]
    fn nothing_matches_nothing() {
        assert!(kb().search("", None, 5).is_empty());
        assert!(kb().search("的 了 the", None, 5).is_empty(), "function words alone rank nothing");
        assert!(kb().search("火星", None, 5).is_empty());
        assert!(Index::build(&[]).search("宽带", None, 5).is_empty());
    }
}
