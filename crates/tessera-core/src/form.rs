//! Strict `application/x-www-form-urlencoded` parsing for OAuth requests.
//!
//! Lenient parsers replace bad percent-escapes and invalid UTF-8 with U+FFFD and keep the last
//! of two equal keys; an authorization server must not guess. RFC 6749 §3.1 and §3.2 say that
//! parameters must not be repeated and that a parameter sent without a value is treated as
//! omitted; both rules are applied here so that no endpoint can forget them.

/// Why a form body was refused. Each maps to `invalid_request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("invalid percent-encoding in the request")]
    BadPercentEncoding,
    #[error("the request is not valid UTF-8")]
    InvalidUtf8,
    #[error("parameter `{0}` is repeated")]
    Duplicate(String),
}

/// The parameters that may be repeated: each `resource` names one more (RFC 8707 §2).
const REPEATABLE: [&str; 1] = ["resource"];

/// The parameters of one request, each name at most once (but [`REPEATABLE`] ones), empty
/// values dropped.
///
/// A list sorted by name rather than a hash map: an OAuth request has a handful of
/// parameters, for which a binary search beats hashing and the sort costs less than building
/// a map; and the sort puts repeated names side by side, so finding them stays O(n log n)
/// for any body.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FormParams {
    params: Vec<(String, String)>,
}

impl FormParams {
    /// Parses a form body or a query string.
    pub fn parse(input: &[u8]) -> Result<Self, FormError> {
        Self::from_decoded(pairs(input)?)
    }

    /// Applies the OAuth rules to decoded pairs: no name twice, empty values dropped.
    pub fn from_decoded(mut pairs: Vec<(String, String)>) -> Result<Self, FormError> {
        apply_rules(&mut pairs).map_err(FormError::Duplicate)?;
        Ok(Self { params: pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let at = self
            .params
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        self.params.get(at).map(|(_, value)| value.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every value of a repeatable parameter, such as `resource`.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let start = self.params.partition_point(|(n, _)| n.as_str() < name);
        self.params
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(move |(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// Builds params from pairs, as a typed caller would; used by tests and adapters. Of a
    /// repeated name, the last value counts.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut params: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        params.reverse();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        params.dedup_by(|later, earlier| {
            later.0 == earlier.0 && !REPEATABLE.contains(&later.0.as_str())
        });
        Self { params }
    }
}

/// Sorts `pairs` by name, refuses a repeated name (returning it) and drops empty values.
///
/// Generic over the name so that it can compare names only through `Ord`: a test counts
/// those comparisons and so proves the work stays O(n log n) for any body.
fn apply_rules<N: Ord + Clone + AsRef<str>>(pairs: &mut Vec<(N, String)>) -> Result<(), N> {
    pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    // A repeated name is an error even when one of the copies is empty.
    if let Some((name, _)) = pairs.windows(2).find_map(|w| match w {
        [a, b] if a.0 == b.0 && !REPEATABLE.contains(&a.0.as_ref()) => Some(a),
        _ => None,
    }) {
        return Err(name.clone());
    }
    pairs.retain(|(_, value)| !value.is_empty());
    Ok(())
}

/// Decodes every `name=value` pair strictly, keeping repeats (callers decide what they mean).
pub fn pairs(input: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    let mut out = Vec::new();
    for pair in input.split(|b| *b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or_default(),
                pair.get(eq + 1..).unwrap_or_default(),
            ),
            None => (pair, &[][..]),
        };
        out.push((decode_component(name)?, decode_component(value)?));
    }
    Ok(out)
}

/// Decodes one name or value: `+` is a space, `%XX` a byte, and the result must be UTF-8.
pub fn decode_component(raw: &[u8]) -> Result<String, FormError> {
    if !raw.iter().any(|b| matches!(b, b'+' | b'%')) {
        return String::from_utf8(raw.to_vec()).map_err(|_| FormError::InvalidUtf8);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.next().and_then(|c| hex_value(*c));
                let lo = bytes.next().and_then(|c| hex_value(*c));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(FormError::BadPercentEncoding),
                }
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).map_err(|_| FormError::InvalidUtf8)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent() {
        let p = FormParams::parse(b"a=b+c%20d&e=%C3%A9").unwrap();
        assert_eq!(p.get("a"), Some("b c d"));
        assert_eq!(p.get("e"), Some("é"));
    }

    #[test]
    fn empty_value_is_omitted_but_still_counts_for_duplicates() {
        let p = FormParams::parse(b"scope=&grant_type=x&&").unwrap();
        assert!(!p.contains("scope"));
        assert_eq!(
            FormParams::parse(b"scope=&scope=a"),
            Err(FormError::Duplicate("scope".into()))
        );
    }

    #[test]
    fn every_parameter_is_found_whatever_the_order() {
        let p = FormParams::parse(b"z=1&grant_type=client_credentials&a=2&scope=api+read").unwrap();
        assert_eq!(p.get("z"), Some("1"));
        assert_eq!(p.get("a"), Some("2"));
        assert_eq!(p.get("grant_type"), Some("client_credentials"));
        assert_eq!(p.get("scope"), Some("api read"));
        assert_eq!(p.get("b"), None);
        assert!(!p.contains(""));
        assert_eq!(
            FormParams::parse(b"b=1&a=&b="),
            Err(FormError::Duplicate("b".into()))
        );
        let typed = FormParams::from_pairs([("b", "1"), ("a", "x"), ("b", "2"), ("c", "")]);
        assert_eq!(typed.get("b"), Some("2"), "the last value counts");
        assert_eq!(typed.get("a"), Some("x"));
        assert!(!typed.contains("c"));
    }

    #[test]
    fn refuses_what_a_lenient_parser_would_guess() {
        for (input, err) in [
            (&b"a=%zz"[..], FormError::BadPercentEncoding),
            (b"a=%4", FormError::BadPercentEncoding),
            (b"a=%", FormError::BadPercentEncoding),
            (b"a=%FF", FormError::InvalidUtf8),
            (b"a=\xff", FormError::InvalidUtf8),
            (b"a=1&a=2", FormError::Duplicate("a".into())),
        ] {
            assert_eq!(FormParams::parse(input), Err(err), "{input:?}");
        }
    }

    #[test]
    fn resource_may_be_repeated_and_nothing_else() {
        let form = FormParams::parse(b"resource=b&scope=x&resource=a&resource=").unwrap();
        let mut resources: Vec<_> = form.get_all("resource").collect();
        resources.sort_unstable();
        assert_eq!(resources, ["a", "b"]);
        assert_eq!(form.get_all("scope").collect::<Vec<_>>(), ["x"]);
        assert_eq!(form.get_all("state").count(), 0);
        assert_eq!(
            FormParams::parse(b"resource=a&scope=x&scope=y"),
            Err(FormError::Duplicate("scope".into()))
        );
    }

    /// Regression for `fuzz/` (target `form`): a body at the server's 64 KiB limit made of
    /// distinct empty names (`0=&1=&2=&...`) was scanned once per name, so its cost grew with
    /// the square of their number. Parsing it stays correct, and the rules compare names at
    /// most 4·n·log2(n) times: the old scan made n²/2 comparisons, hundreds of times more.
    /// Counting comparisons, not measuring time, keeps the test deterministic.
    #[test]
    fn many_distinct_empty_names_parse_in_n_log_n_comparisons() {
        use std::cell::Cell;
        use std::cmp::Ordering;

        /// A name that counts every comparison made with it.
        #[derive(Clone)]
        struct Counted<'a>(String, &'a Cell<u64>);
        impl PartialEq for Counted<'_> {
            fn eq(&self, other: &Self) -> bool {
                self.1.set(self.1.get() + 1);
                self.0 == other.0
            }
        }
        impl Eq for Counted<'_> {}
        impl AsRef<str> for Counted<'_> {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl PartialOrd for Counted<'_> {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Counted<'_> {
            fn cmp(&self, other: &Self) -> Ordering {
                self.1.set(self.1.get() + 1);
                self.0.cmp(&other.0)
            }
        }
        /// The comparisons `apply_rules` makes on `body`, the number of pairs, and its verdict.
        fn comparisons(body: &[u8]) -> (u64, u64, Result<usize, String>) {
            let count = Cell::new(0);
            let mut named: Vec<_> = pairs(body)
                .unwrap()
                .into_iter()
                .map(|(name, value)| (Counted(name, &count), value))
                .collect();
            let n = named.len() as u64;
            let verdict = apply_rules(&mut named).map(|()| named.len());
            (count.get(), n, verdict.map_err(|name| name.0))
        }
        fn body(value: &str, repeat_first: bool) -> Vec<u8> {
            let mut out = String::new();
            let mut i = 0u32;
            while out.len() < 64 * 1024 - 16 {
                out.push_str(&format!("{i:x}={value}&"));
                i += 1;
            }
            if repeat_first {
                out.push_str("0=");
            }
            out.into_bytes()
        }
        let empty = body("", false);
        let full = body("v", false);
        assert!(FormParams::parse(&empty).unwrap().params.is_empty());
        assert_eq!(
            FormParams::parse(&body("", true)),
            Err(FormError::Duplicate("0".into()))
        );
        assert_eq!(
            FormParams::parse(&full).unwrap().params.len(),
            full.split(|b| *b == b'&').filter(|p| !p.is_empty()).count()
        );
        for (input, verdict) in [
            (empty, Ok(0)),
            (body("", true), Err("0".to_owned())),
            (
                full.clone(),
                Ok(full.split(|b| *b == b'&').filter(|p| !p.is_empty()).count()),
            ),
        ] {
            let (made, n, got) = comparisons(&input);
            assert_eq!(got, verdict);
            assert!(n > 5_000, "the body holds {n} pairs");
            let bound = 4 * n * u64::from(n.ilog2() + 1);
            assert!(
                made <= bound,
                "{made} comparisons for {n} names (bound {bound})"
            );
        }
    }
}
