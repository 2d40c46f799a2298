//! Arbitrary bytes as an Admin API body: the first byte picks the resource
//! kind by its index in `ResourceKind::ALL` (every kind: ssls, upstreams,
//! ip_sets, regex_pattern_sets, web_acls, stream_routes, cache_policies,
//! distributions, continuous_deployment_policies, invalidations; the seeds'
//! first bytes follow that order), the rest is the body.
//! It goes through exactly what the Admin API runs before storing
//! (`json::parse` with its depth bound, the typed wire, validation,
//! references) and must be refused with an error, never panic or overflow.
//! Whatever is accepted must reload from its stored form, as the reconciler
//! loads it: what the Admin API accepts, the data plane can load.
//!
//! `cargo fuzz run --sanitizer none admin_body corpus/admin_body seeds/admin_body`

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_model::resource::{Resource, Validation, Wire};
use shardgate_model::{ResourceId, ResourceKind, json};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let kind = ResourceKind::ALL[usize::from(selector) % ResourceKind::ALL.len()];
    let Ok(value) = json::parse(body) else { return };
    let Ok(mut wire) = Wire::from_value(kind, value) else { return };
    let id = ResourceId::parse("fuzz").expect("a constant id");
    drop(wire.references());
    // The Admin API refuses expired certificates only on request; check both.
    let strict = Validation { now_unix: Some(1_700_000_000) };
    drop(wire.validate(&id, strict));
    let Ok(_) = wire.validate(&id, Validation::default()) else { return };
    wire.set_id(&id);
    wire.set_times(1, 2);
    let stored = wire.to_bytes();
    if let Err(e) = Resource::parse_stored(kind, &id, &stored) {
        panic!("{kind} accepted but its stored form does not load: {e}\n{}", String::from_utf8_lossy(&stored));
    }
});
