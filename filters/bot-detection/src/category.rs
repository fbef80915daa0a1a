//! What a request is taken for.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A browser with nothing suspicious about it.
    Human,
    /// A real client that is not a browser: native app HTTP stacks (`Dalvik/`, `CFNetwork/`), media
    /// players, TVs, consoles, desktop and in-app apps.
    App,
    SearchEngine,
    AiCrawler,
    Seo,
    Monitor,
    Scanner,
    HttpLibrary,
    Headless,
    FeedReader,
    LinkPreview,
    Archiver,
    Advertising,
    /// Automated by its user-agent (a generic bot word, a contact address, neither a browser nor an
    /// app, empty) but unnamed.
    UnknownBot,
    /// Claims to be a verified bot from outside its published ranges.
    Impersonator,
    /// A browser user-agent whose headers contradict it (score below the threshold).
    Suspicious,
}

impl Category {
    pub const ALL: [Category; 16] = [
        Category::Human,
        Category::App,
        Category::SearchEngine,
        Category::AiCrawler,
        Category::Seo,
        Category::Monitor,
        Category::Scanner,
        Category::HttpLibrary,
        Category::Headless,
        Category::FeedReader,
        Category::LinkPreview,
        Category::Archiver,
        Category::Advertising,
        Category::UnknownBot,
        Category::Impersonator,
        Category::Suspicious,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Human => "human",
            Category::App => "app",
            Category::SearchEngine => "search_engine",
            Category::AiCrawler => "ai_crawler",
            Category::Seo => "seo",
            Category::Monitor => "monitor",
            Category::Scanner => "scanner",
            Category::HttpLibrary => "http_library",
            Category::Headless => "headless",
            Category::FeedReader => "feed_reader",
            Category::LinkPreview => "link_preview",
            Category::Archiver => "archiver",
            Category::Advertising => "advertising",
            Category::UnknownBot => "unknown_bot",
            Category::Impersonator => "impersonator",
            Category::Suspicious => "suspicious",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Automated traffic (everything but `human`, `app` and `suspicious`).
    pub fn is_bot(self) -> bool {
        !matches!(self, Category::Human | Category::App | Category::Suspicious)
    }

    /// The score a user-agent of this category starts from (100 = certainly human).
    pub fn base_score(self) -> u8 {
        match self {
            Category::Human => 100,
            Category::App => 60,
            Category::Suspicious => 40,
            Category::UnknownBot => 10,
            Category::HttpLibrary => 5,
            Category::Headless => 3,
            Category::Scanner | Category::Impersonator => 0,
            _ => 10,
        }
    }

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}
