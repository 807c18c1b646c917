//! Announcements (they do not reach data planes: no revision bump).

use sqlx::Row;
use switchyard_core::ids::AccountId;

use super::rows::one_changed;
use super::{Store, StoreError};

/// An announcement.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NewsItem {
    pub id: String,
    /// `None` for the operator.
    pub author_id: Option<String>,
    pub at_unix_ms: i64,
    pub title: String,
    pub body: String,
}

impl Store {
    /// Post an announcement (news does not reach data planes: no revision bump).
    pub async fn post_news(&self, item: &NewsItem) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO news (id, author_id, at, title, body) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(item.id.clone())
        .bind(item.author_id.clone())
        .bind(item.at_unix_ms)
        .bind(item.title.clone())
        .bind(item.body.clone())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Delete an announcement of `author` (`None`: the operator's).
    pub async fn delete_news(&self, author: Option<AccountId>, id: &str) -> Result<(), StoreError> {
        let deleted = match author {
            Some(a) => {
                sqlx::query("DELETE FROM news WHERE id = $1 AND author_id = $2")
                    .bind(id.to_owned())
                    .bind(a.to_string())
                    .execute(&self.db.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM news WHERE id = $1 AND author_id IS NULL")
                    .bind(id.to_owned())
                    .execute(&self.db.pool)
                    .await?
            }
        };
        one_changed(deleted.rows_affected(), "announcement")
    }

    /// Announcements that reach `account` (posted by it or any ancestor, or by the
    /// operator), newest first; the operator (`None`) sees its own.
    pub async fn news_for(
        &self,
        account: Option<AccountId>,
        limit: u32,
    ) -> Result<Vec<NewsItem>, StoreError> {
        let rows = sqlx::query(
            "WITH RECURSIVE up(id, parent_id) AS ( \
               SELECT id, parent_id FROM accounts WHERE id = $1 \
               UNION ALL \
               SELECT a.id, a.parent_id FROM accounts a JOIN up ON a.id = up.parent_id \
             ) SELECT n.id, n.author_id, n.at, n.title, n.body FROM news n \
             WHERE n.author_id IS NULL OR n.author_id IN (SELECT id FROM up) \
             ORDER BY n.at DESC, n.id DESC LIMIT $2",
        )
        .bind(account.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NewsItem {
                    id: r.try_get(0)?,
                    author_id: r.try_get(1)?,
                    at_unix_ms: r.try_get(2)?,
                    title: r.try_get(3)?,
                    body: r.try_get(4)?,
                })
            })
            .collect()
    }
}
