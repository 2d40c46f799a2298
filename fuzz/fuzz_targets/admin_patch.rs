//! Arbitrary bytes as a PATCH on a stored resource: the first byte picks the
//! kind; the rest is split at the first `0x00` into the stored value and the
//! patch; a patch that starts with `/` is `<sub/path>\n<value>` (a sub-path
//! PATCH), anything else a merge patch. The merge, the sub-path replacement,
//! the depth check of the result and the validation that follows must
//! refuse bad input with an error, never panic or overflow.
//!
//! `cargo fuzz run --sanitizer none admin_patch corpus/admin_patch seeds/admin_patch`

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_admin::patch;
use shardgate_model::resource::{Validation, Wire};
use shardgate_model::{ResourceId, ResourceKind, json};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let kind = ResourceKind::ALL[usize::from(selector) % ResourceKind::ALL.len()];
    let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let (stored, change) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
    let Ok(mut current) = json::parse(stored) else { return };
    if let Some(sub) = change.strip_prefix(b"/") {
        let newline = sub.iter().position(|b| *b == b'\n').unwrap_or(sub.len());
        let Ok(path) = std::str::from_utf8(&sub[..newline]) else { return };
        let Ok(value) = json::parse(sub.get(newline + 1..).unwrap_or_default()) else { return };
        if patch::replace_at(&mut current, path, value).is_err() {
            return;
        }
    } else {
        let Ok(change) = json::parse(change) else { return };
        if !change.is_object() {
            return;
        }
        patch::merge(&mut current, change);
    }
    // As the Admin API: the result may nest deeper than either part.
    if json::check_value_depth(&current).is_err() {
        return;
    }
    let Ok(wire) = Wire::from_value(kind, current) else { return };
    let id = ResourceId::parse("fuzz").expect("a constant id");
    drop(wire.validate(&id, Validation::default()));
});
