//! Scopes: RFC 6749 §3.3 `scope-token = 1*NQCHAR`, space-separated, order irrelevant.

use std::collections::BTreeSet;
use std::fmt;

/// A set of scope tokens. Parsing is the only way to build one, so every `Scope` is valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scope(BTreeSet<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope contains a character outside RFC 6749 section 3.3 or an empty token")]
pub struct InvalidScope;

impl Scope {
    /// Parses a space-delimited list. Tokens are separated by exactly one space (%x20), as the
    /// grammar says; anything else (tabs, double spaces, quotes, backslashes) is invalid.
    pub fn parse(s: &str) -> Result<Self, InvalidScope> {
        if s.is_empty() {
            return Ok(Self::default());
        }
        let mut set = BTreeSet::new();
        for token in s.split(' ') {
            if token.is_empty() || !token.bytes().all(is_nqchar) {
                return Err(InvalidScope);
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn union(&self, other: &Scope) -> Scope {
        Scope(self.0.union(&other.0).cloned().collect())
    }
}

fn is_nqchar(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for token in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(token)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_order() {
        let s = Scope::parse("write read read").unwrap();
        assert_eq!(s.to_string(), "read write");
        assert!(Scope::parse("read").unwrap().is_subset(&s));
        assert!(!Scope::parse("admin").unwrap().is_subset(&s));
    }

    #[test]
    fn rejects_bad_grammar() {
        for bad in ["a  b", " a", "a ", "a\tb", "a\"b", "a\\b", "é", "a\nb"] {
            assert_eq!(Scope::parse(bad), Err(InvalidScope), "{bad:?}");
        }
    }
}
