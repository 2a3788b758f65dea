//! `waihu kb add|list|search|remove` (the knowledge base agents search during calls) and
//! `waihu script` (a campaign's call script, filled in for one contact, as the agent's
//! screen shows it).

use crate::campaign_cmd::{config_of, find, open_store, unix_ms, StoreArg};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use waihu_actors::assist::kb::Index;
use waihu_actors::assist::script;
use waihu_storage::Article;

#[derive(Subcommand, Debug)]
pub enum KbCmd {
    /// Add an article (or replace one with --id).
    Add {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        title: String,
        /// The body as text; or --file.
        #[arg(long, conflicts_with = "file")]
        body: Option<String>,
        /// A UTF-8 text or Markdown file holding the body.
        #[arg(long)]
        file: Option<PathBuf>,
        /// A tag (repeatable); tags rank like title words.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// A campaign the article is for (repeatable); none: every campaign.
        #[arg(long = "campaign")]
        campaigns: Vec<String>,
        /// Replace this article.
        #[arg(long)]
        id: Option<u64>,
    },
    /// The articles, one line each.
    List {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Search by keyword, in Chinese or English; prints the best matches.
    Search {
        #[command(flatten)]
        store: StoreArg,
        query: String,
        /// Only articles for this campaign (and those for every campaign).
        #[arg(long)]
        campaign: Option<String>,
        #[arg(long, default_value_t = 5)]
        limit: usize,
    },
    Remove {
        #[command(flatten)]
        store: StoreArg,
        id: u64,
    },
}

pub fn kb(cmd: KbCmd) -> Result<ExitCode> {
    match cmd {
        KbCmd::Add { store, title, body, file, tags, campaigns, id } => {
            let body = match (body, file) {
                (Some(b), _) => b,
                (None, Some(f)) => std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
                (None, None) => bail!("give the article's body with --body or --file"),
            };
            let s = open_store(&store.store)?;
            for c in &campaigns {
                find(&s, c)?;
            }
            let a = Article { id: id.unwrap_or(0), title, body, tags, campaigns, updated_unix_ms: unix_ms() };
            let a = s.put_article(a)?;
            println!("article {}: {}", a.id, a.title);
        }
        KbCmd::List { store } => {
            let s = open_store(&store.store)?;
            for a in s.articles()? {
                let scope = if a.campaigns.is_empty() { "every campaign".to_string() } else { a.campaigns.join(", ") };
                println!(
                    "{:>6}  {}  [{}]  ({} characters; {scope})",
                    a.id,
                    a.title,
                    a.tags.join(", "),
                    a.body.chars().count()
                );
            }
        }
        KbCmd::Search { store, query, campaign, limit } => {
            let s = open_store(&store.store)?;
            let index = Index::build(&s.articles()?);
            let hits = index.search(&query, campaign.as_deref(), limit);
            if hits.is_empty() {
                println!("no article matches {query:?} ({} articles searched)", index.len());
            }
            for h in hits {
                println!("{:>6}  {:.2}  {}  (matched: {})", h.id, h.score, h.title, h.matched.join(" "));
            }
        }
        KbCmd::Remove { store, id } => {
            if !open_store(&store.store)?.remove_article(id)? {
                bail!("no article {id}");
            }
            println!("article {id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ScriptArgs {
    #[command(flatten)]
    store: StoreArg,
    /// The campaign whose script it is.
    campaign: String,
    /// The contact's id (see `waihu cdr`), or --phone.
    #[arg(long, conflicts_with = "phone")]
    contact: Option<u64>,
    /// The contact's number, as imported (E.164).
    #[arg(long)]
    phone: Option<String>,
    /// The agent's name, for {agent}.
    #[arg(long, default_value = "")]
    agent: String,
}

pub fn script(a: ScriptArgs) -> Result<ExitCode> {
    let s = open_store(&a.store.store)?;
    let rec = find(&s, &a.campaign)?;
    let cfg = config_of(&rec)?;
    let Some(sc) = cfg.script else { bail!("campaign {:?} has no script (script = \"FILE\" in its config)", rec.name) };
    let contact = match (a.contact, a.phone) {
        (Some(id), _) => s.contact(rec.id, id)?,
        (None, Some(p)) => s.find_by_phone(rec.id, &p)?,
        (None, None) => bail!("name the contact with --contact ID or --phone NUMBER"),
    };
    let Some(c) = contact else { bail!("no such contact in campaign {:?}", rec.name) };
    let c = c.contact;
    let values = script::values(c.name.as_deref(), &c.phone, &c.fields, &a.agent, &rec.name);
    let filled = sc.fill(&values);
    println!("{}", filled.text);
    if !filled.missing.is_empty() {
        eprintln!("waihu: the contact has no value for: {}", filled.missing.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
