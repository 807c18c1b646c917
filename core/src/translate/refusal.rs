//! Why a request cannot be translated, and what translation left out.

use std::borrow::Cow;

use crate::error::ErrorCode;

/// A request translation cannot carry to the target dialect. The client is told in
/// its own error shape ([`Refusal::code`] and the message); the data plane may try a
/// key of another dialect instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The body is not a request of the client's dialect (not JSON, wrong types,
    /// invalid UTF-8, nested too deep, a field of its own dialect unknown here).
    #[error("the request cannot be read: {detail}")]
    Malformed { detail: String },
    /// The request asks for something the target dialect has no way to say.
    #[error("{what} cannot be carried to {target}")]
    Unsupported {
        what: Cow<'static, str>,
        target: &'static str,
    },
}

impl Refusal {
    pub(crate) fn unsupported(what: impl Into<Cow<'static, str>>, target: &'static str) -> Self {
        Self::Unsupported {
            what: what.into(),
            target,
        }
    }

    pub(crate) fn malformed(detail: impl std::fmt::Display) -> Self {
        Self::Malformed {
            detail: detail.to_string(),
        }
    }

    /// The error code the client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed { .. } => ErrorCode::InvalidRequest,
            Self::Unsupported { .. } => ErrorCode::Unprocessable,
        }
    }
}

/// A field of the request the upstream will not see, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub field: &'static str,
    pub reason: &'static str,
}

/// Record that `field` was dropped (once per field).
pub(crate) fn drop_field(dropped: &mut Vec<Dropped>, field: &'static str, reason: &'static str) {
    if !dropped.iter().any(|d| d.field == field) {
        dropped.push(Dropped { field, reason });
    }
}

pub(crate) fn dropped_header(dropped: &[Dropped]) -> Option<String> {
    if dropped.is_empty() {
        return None;
    }
    let mut out = String::new();
    for d in dropped {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(d.field);
        out.push_str(" (");
        out.push_str(d.reason);
        out.push(')');
    }
    Some(out)
}
