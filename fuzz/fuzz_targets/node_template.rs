//! A node template and an SNI (split at the first NUL): parsing refuses or
//! accepts, never panics; rendering an accepted template gives a name that
//! passes the LDH rule (the name asked of the DNS) or an error, never
//! panics, and what it renders ends with the template's fixed last label.
//!
//! `cargo fuzz run node_template` (from this directory; needs cargo-fuzz).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_model::NodeTemplate;
use shardgate_model::node_template::check_dns_name;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (template, sni) = text.split_once('\0').unwrap_or((text, "room-1.rooms.example.com"));
    let Ok(t) = NodeTemplate::parse(template) else { return };
    if let Ok(name) = t.render(sni) {
        assert_eq!(check_dns_name(&name), Ok(()), "{template:?} {sni:?} -> {name:?}");
        let last = t.as_str().rsplit('.').next().unwrap_or_default();
        assert!(name.ends_with(&format!(".{last}")), "{template:?} {sni:?} -> {name:?}");
    }
});
