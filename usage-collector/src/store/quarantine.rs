//! The quarantine: usage events set aside with the reason they could not be stored.
//! Written on the rare path only, through the SQL both backends speak.

use sqlx::Row;

use super::{StoreError, UsageStore};

/// Longest text kept of a quarantined event or its reason.
const MAX_KEPT: usize = 4096;

/// An event set aside, in printable form: whatever it held, the row is storable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// The event's id as sent (it may be what was wrong).
    pub event_id: String,
    /// A bounded name of why (also the metric's label).
    pub kind: &'static str,
    /// Why, in words.
    pub reason: String,
    /// The event as received, control characters escaped.
    pub event: String,
}

impl Quarantined {
    pub fn new(
        event_id: &str,
        kind: &'static str,
        reason: &str,
        event: &impl std::fmt::Debug,
    ) -> Self {
        Self {
            event_id: printable(event_id, 128),
            kind,
            reason: printable(reason, MAX_KEPT),
            event: printable(&format!("{event:?}"), MAX_KEPT),
        }
    }
}

/// A quarantined row as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineRow {
    pub event_id: String,
    pub reason: String,
    pub received_ms: i64,
    pub event: String,
}

/// `text` with every control character escaped (`\u{0}`), cut to `max` bytes on a
/// character boundary.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            break;
        }
    }
    out
}

impl UsageStore {
    /// Set events aside; one already there (a replay) is left as it is.
    pub async fn quarantine(&self, rows: &[Quarantined], now_ms: i64) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.pool.begin().await?;
        for q in rows {
            sqlx::query(
                "INSERT INTO usage_quarantine (event_id, reason, received_ms, event) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (event_id, reason) DO NOTHING",
            )
            .bind(&q.event_id)
            .bind(format!("{}: {}", q.kind, q.reason))
            .bind(now_ms)
            .bind(&q.event)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The most recently quarantined events, newest first.
    pub async fn quarantined(&self, limit: u32) -> Result<Vec<QuarantineRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id, reason, received_ms, event FROM usage_quarantine \
             ORDER BY received_ms DESC, event_id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantineRow {
                    event_id: r.try_get("event_id")?,
                    reason: r.try_get("reason")?,
                    received_ms: r.try_get("received_ms")?,
                    event: r.try_get("event")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_and_cuts_on_a_boundary() {
        assert_eq!(printable("gpt\u{0}x", 100), "gpt\\u{0}x");
        assert_eq!(printable("a\u{1b}[1m", 100), "a\\u{1b}[1m");
        assert_eq!(printable("ab模c", 4), "ab");
        assert_eq!(printable("abc", 3), "abc");
        assert!(!printable(&"\u{0}".repeat(5000), MAX_KEPT).contains('\u{0}'));
    }
}
