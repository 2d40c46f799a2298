//! Stream-route and certificate lookup against a brute-force oracle.
//!
//! The input is lines: up to 32 route lines (`|`-separated SNI patterns; an
//! empty line is a route without SNI), a line `--`, then the SNIs to look
//! up. Patterns that do not parse are skipped, as the Admin API refuses
//! them. For every SNI the router's answer must equal the oracle's: the most
//! specific match (exact > longest wildcard suffix > `*` > no SNI), ties to
//! the first route in config order; and the certificate table's answer must
//! equal the pattern that covers the name by RFC 6125 §6.4.3's one-label rule.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_model::SniPattern;
use shardgate_snapshot::stream_router::{Filters, MatchRank, RouteQuery, StreamRouter};
use shardgate_snapshot::SniTable;

fn rank(p: &SniPattern, sni: &str) -> Option<MatchRank> {
    if !p.matches_suffix(sni) {
        return None;
    }
    Some(match p {
        SniPattern::Exact(_) => MatchRank::Exact,
        SniPattern::Wildcard(suffix) => MatchRank::Wildcard(suffix.len()),
        SniPattern::Any => MatchRank::AnySni,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (routes_text, queries) = text.split_once("\n--\n").unwrap_or((text, ""));
    let mut routes: Vec<Vec<SniPattern>> = Vec::new();
    for line in routes_text.lines().take(32) {
        let patterns: Vec<SniPattern> =
            line.split('|').filter(|s| !s.is_empty()).filter_map(|s| SniPattern::parse(s).ok()).collect();
        if line.is_empty() || !patterns.is_empty() {
            routes.push(patterns);
        }
    }
    let mut router: StreamRouter<usize> = StreamRouter::default();
    let mut certs: SniTable<SniPattern> = SniTable::default();
    for (i, patterns) in routes.iter().enumerate() {
        router.insert(patterns, Filters::default(), i);
        for p in patterns {
            certs.entry(p, || p.clone());
        }
    }
    for sni in queries.lines().take(64) {
        let sni = sni.to_ascii_lowercase();
        let q = RouteQuery {
            sni: Some(&sni),
            server_port: 8888,
            server_addr: std::net::Ipv4Addr::LOCALHOST.into(),
            remote_addr: std::net::Ipv4Addr::LOCALHOST.into(),
        };
        // The oracle: the best rank over every route's patterns; the first route wins ties.
        let mut best: Option<(usize, MatchRank)> = None;
        for (i, patterns) in routes.iter().enumerate() {
            let r = if patterns.is_empty() { Some(MatchRank::NoSni) } else { patterns.iter().filter_map(|p| rank(p, &sni)).max() };
            if let Some(r) = r
                && best.is_none_or(|(_, b)| r > b)
            {
                best = Some((i, r));
            }
        }
        let found = router.find(&q).map(|(v, r)| (*v, r));
        assert_eq!(found, best, "route for {sni:?} among {routes:?}");

        // Certificates: exact, else a wildcard one label up, else `*`.
        let covering = |want: fn(&SniPattern) -> bool| {
            routes.iter().flatten().find(|p| want(p) && p.covers_one_label(&sni)).cloned()
        };
        let expected = covering(|p| matches!(p, SniPattern::Exact(_)))
            .or_else(|| covering(|p| matches!(p, SniPattern::Wildcard(_))))
            .or_else(|| covering(|p| matches!(p, SniPattern::Any)));
        assert_eq!(certs.find_cert(&sni).cloned(), expected, "certificate for {sni:?}");
    }
});
