//! Announcements an account posts for its descendants.

use serde::Deserialize;

use super::{ApiError, Caller, Service};
use crate::store::NewsItem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostNews {
    pub title: String,
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsQuery {
    pub limit: Option<u32>,
}

impl Service {
    /// `POST /dashboard/news`: an announcement for the caller's descendants (for every
    /// account when the operator posts).
    pub async fn post_news(
        &self,
        caller: &Caller,
        req: PostNews,
        now_ms: i64,
    ) -> Result<NewsItem, ApiError> {
        let title = req.title.trim();
        if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
            return Err(ApiError::invalid_field(
                "title",
                "title must be 1-200 printable characters",
            ));
        }
        if req.body.chars().count() > 10_000 {
            return Err(ApiError::invalid_field(
                "body",
                "body must be at most 10000 characters",
            ));
        }
        let item = NewsItem {
            id: uuid::Uuid::now_v7().to_string(),
            author_id: caller.account().map(|a| a.id.to_string()),
            at_unix_ms: now_ms,
            title: title.to_owned(),
            body: req.body,
        };
        self.store.post_news(&item).await?;
        Ok(item)
    }

    /// `GET /dashboard/news`: what the caller's ancestors (and the operator) announced.
    pub async fn news(&self, caller: &Caller, query: NewsQuery) -> Result<Vec<NewsItem>, ApiError> {
        let limit = query.limit.unwrap_or(50);
        if limit == 0 || limit > 500 {
            return Err(ApiError::invalid_field("limit", "limit must be 1-500"));
        }
        Ok(self
            .store
            .news_for(caller.account().map(|a| a.id), limit)
            .await?)
    }

    /// `DELETE /dashboard/news/{id}`: withdraw one of the caller's announcements.
    pub async fn delete_news(&self, caller: &Caller, id: &str) -> Result<(), ApiError> {
        Ok(self
            .store
            .delete_news(caller.account().map(|a| a.id), id)
            .await?)
    }
}
