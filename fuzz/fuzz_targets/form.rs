//! `FormParams::parse` and `form::pairs`: every form body and query string the server reads.
//!
//! Properties: neither panics; they agree on decoding errors; an accepted form has no name
//! twice, keeps every non-empty value under its name and drops every empty one.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use tessera_core::form::{FormError, FormParams, pairs};

fuzz_target!(|data: &[u8]| {
    let parsed = FormParams::parse(data);
    let decoded = pairs(data);
    match (&parsed, &decoded) {
        (Ok(params), Ok(decoded)) => {
            let mut seen = HashSet::new();
            for (name, value) in decoded {
                assert!(
                    seen.insert(name.as_str()),
                    "{name:?} twice in an accepted form"
                );
                if value.is_empty() {
                    assert!(!params.contains(name), "empty {name:?} was kept");
                } else {
                    assert_eq!(params.get(name), Some(value.as_str()));
                }
            }
        }
        (Err(FormError::Duplicate(name)), Ok(decoded)) => {
            let copies = decoded.iter().filter(|(n, _)| n == name).count();
            assert!(
                copies >= 2,
                "{name:?} called a duplicate but appears {copies} time(s)"
            );
        }
        (Err(e), Err(d)) => assert_eq!(e, d, "parse and pairs disagree"),
        (parsed, decoded) => panic!("parse {parsed:?} but pairs {decoded:?}"),
    }
});
