//! Model name patterns: an exact name (`gpt-4o-mini`) or a prefix (`gpt-4o*`).

use std::fmt;
use std::str::FromStr;

/// The store's bound on a model name holds for patterns too.
const MAX_LEN: usize = crate::fields::MODEL_MAX_BYTES;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ModelPattern {
    Exact(String),
    Prefix(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("model pattern is empty")]
    Empty,
    #[error("model pattern is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("model pattern {0:?} may hold `*` only as its last character")]
    MisplacedStar(String),
    #[error("model pattern {0:?} contains whitespace or control characters")]
    BadCharacter(String),
}

impl ModelPattern {
    pub fn matches(&self, model: &str) -> bool {
        match self {
            Self::Exact(name) => name == model,
            Self::Prefix(prefix) => model.starts_with(prefix.as_str()),
        }
    }
}

impl FromStr for ModelPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.len() > MAX_LEN {
            return Err(PatternError::TooLong);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PatternError::BadCharacter(text.to_owned()));
        }
        match text.find('*') {
            None => Ok(Self::Exact(text.to_owned())),
            Some(at) if at == text.len() - 1 => Ok(Self::Prefix(text[..at].to_owned())),
            Some(_) => Err(PatternError::MisplacedStar(text.to_owned())),
        }
    }
}

impl TryFrom<String> for ModelPattern {
    type Error = PatternError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<ModelPattern> for String {
    fn from(p: ModelPattern) -> Self {
        p.to_string()
    }
}

impl ModelPattern {
    /// Whether every name this pattern admits is admitted by `other` too.
    pub fn within(&self, other: &Self) -> bool {
        match (self, other) {
            (_, Self::Prefix(p)) => match self {
                Self::Exact(name) | Self::Prefix(name) => name.starts_with(p.as_str()),
            },
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Prefix(_), Self::Exact(_)) => false,
        }
    }

    /// The names both patterns admit, as a pattern (patterns nest or are disjoint).
    pub fn intersect(&self, other: &Self) -> Option<Self> {
        if self.within(other) {
            Some(self.clone())
        } else if other.within(self) {
            Some(other.clone())
        } else {
            None
        }
    }
}

impl fmt::Display for ModelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

impl fmt::Debug for ModelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Whether any pattern in `patterns` admits `model`.
pub fn any_matches(patterns: &[ModelPattern], model: &str) -> bool {
    patterns.iter().any(|p| p.matches(model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix() {
        let exact: ModelPattern = "gpt-4o".parse().unwrap();
        let prefix: ModelPattern = "gpt-4o*".parse().unwrap();
        let all: ModelPattern = "*".parse().unwrap();
        assert!(exact.matches("gpt-4o"));
        assert!(!exact.matches("gpt-4o-mini"));
        assert!(prefix.matches("gpt-4o-mini"));
        assert!(prefix.matches("gpt-4o"));
        assert!(!prefix.matches("gpt-4"));
        assert!(all.matches("anything"));
        assert_eq!(prefix.to_string(), "gpt-4o*");
    }

    #[test]
    fn nesting_and_intersection() {
        let p = |s: &str| s.parse::<ModelPattern>().unwrap();
        assert!(p("gpt-4o").within(&p("gpt-4o")));
        assert!(p("gpt-4o").within(&p("gpt*")));
        assert!(p("gpt-4o*").within(&p("gpt*")));
        assert!(!p("gpt*").within(&p("gpt-4o*")));
        assert!(!p("gpt*").within(&p("gpt")));
        assert_eq!(p("gpt*").intersect(&p("gpt-4o*")), Some(p("gpt-4o*")));
        assert_eq!(p("gpt*").intersect(&p("gpt-4o")), Some(p("gpt-4o")));
        assert_eq!(p("gpt*").intersect(&p("claude*")), None);
        assert_eq!(serde_json::to_string(&p("a*")).unwrap(), "\"a*\"");
    }

    #[test]
    fn bad_patterns() {
        assert_eq!("".parse::<ModelPattern>(), Err(PatternError::Empty));
        assert!(matches!(
            "g*pt".parse::<ModelPattern>(),
            Err(PatternError::MisplacedStar(_))
        ));
        assert!(matches!(
            "**".parse::<ModelPattern>(),
            Err(PatternError::MisplacedStar(_))
        ));
        assert!(matches!(
            "gpt 4".parse::<ModelPattern>(),
            Err(PatternError::BadCharacter(_))
        ));
        assert_eq!(
            "x".repeat(201).parse::<ModelPattern>(),
            Err(PatternError::TooLong)
        );
    }
}
