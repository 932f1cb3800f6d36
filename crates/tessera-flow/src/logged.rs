//! Attacker-chosen text, made fit for a log line.

/// An attacker-chosen identifier as a log field: at most 64 characters, control characters
/// escaped, so a request cannot flood the log or forge lines in it.
pub fn loggable(text: &str) -> String {
    const MOST: usize = 64;
    let mut out: String = text
        .chars()
        .take(MOST)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MOST).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::loggable;

    #[test]
    fn logged_identifiers_are_short_and_escaped() {
        assert_eq!(loggable("alice"), "alice");
        assert_eq!(loggable("a\nb"), "a\\nb");
        let long = "x".repeat(60_000);
        assert_eq!(loggable(&long).len(), 64 + 3);
    }
}
