//! `tessera_guard::parse_introspection`: the JSON an authorization server (or whatever answers
//! at its address) sends back to the guard.
//!
//! Properties: never panics; an active answer is never already expired at `now`, nor not yet
//! valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::clock::UnixTime;
use tessera_guard::parse_introspection;

const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(info)) = parse_introspection(data, NOW) {
        assert!(
            info.expires_at.is_none_or(|exp| exp > NOW),
            "expired: {info:?}"
        );
    }
});
