//! Freshness, with the cases of the HTTP Caching Tests suite
//! (github.com/http-tests/cache-tests, `tests/*.mjs`) named by their ids.

use super::*;
use http::HeaderValue;

/// 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000;

const B: TtlBounds =
    TtlBounds { min: Duration::ZERO, default: Duration::from_secs(86_400), max: Duration::from_secs(31_536_000) };

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0)
}

/// An HTTP-date `offset` seconds from [`T0`].
fn http_date(offset: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = (T0 as i64 + offset) as u64;
    let days = (secs / 86_400) as i64;
    // Civil date of `days` since 1970 (same method as the parser's inverse).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let t = secs % 86_400;
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

fn h(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("value"));
    }
    m
}

fn cdn() -> Vec<HeaderName> {
    vec![HeaderName::from_static("cdn-cache-control")]
}

fn decide(pairs: &[(&str, &str)]) -> Storability {
    storability(200, &h(pairs), B, &cdn(), Timing::at(now()))
}

/// Seconds of freshness left, or `None` when not stored.
fn ttl(pairs: &[(&str, &str)]) -> Option<u64> {
    match decide(pairs) {
        Storability::Store(f) => Some(f.ttl.as_secs()),
        Storability::Skip(_) => None,
    }
}

/// Whether a second request right away is served from the cache.
fn reused(pairs: &[(&str, &str)]) -> bool {
    ttl(pairs).is_some_and(|t| t > 0)
}

#[test]
fn http_date_helper_is_right() {
    assert_eq!(http_date(0), "Tue, 14 Nov 2023 22:13:20 GMT");
    assert_eq!(date::parse(http_date(-86_400 * 400).as_bytes()), Some(now() - Duration::from_secs(86_400 * 400)));
}

#[test]
fn age_uses_the_first_member_and_ignores_invalid_values() {
    let age = |lines: &[&str]| age_of(&h(&lines.iter().map(|l| ("age", *l)).collect::<Vec<_>>())).map(|d| d.as_secs());
    // A list whose first member is old and whose second says 0 is old, as
    // in age-parse-suffix / -prefix / -dup-*.
    assert_eq!(age(&["7200, 0"]), Some(7200));
    assert_eq!(age(&["7200,0"]), Some(7200));
    assert_eq!(age(&["7200", "0"]), Some(7200), "age-parse-suffix-twoline");
    assert_eq!(age(&["0,7200"]), Some(0), "age-parse-prefix");
    assert_eq!(age(&["0", "7200"]), Some(0), "age-parse-prefix-twoline");
    assert_eq!(age(&["7200, 7200"]), Some(7200), "age-parse-dup-old");
    assert_eq!(age(&[", 60"]), Some(60), "empty list members are skipped (RFC 9110 §5.6.1)");
    // age-parse-nonnumeric / -negative / -float: the field is ignored.
    assert_eq!(age(&["abc"]), None);
    assert_eq!(age(&["-7200"]), None);
    assert_eq!(age(&["7200.0"]), None);
    assert_eq!(age(&["abc, 7200"]), None, "the first member decides");
    assert_eq!(age(&["99999999999999999999999"]), Some(DELTA_SECONDS_MAX), "RFC 9111 §1.2.2");
    assert_eq!(age(&[]), None);
}

#[test]
fn an_aged_response_is_not_fresh() {
    let d0 = http_date(0);
    // `Age: 7200, 0` with max-age=3600 is two hours old, not fresh (reading
    // the last member, or the field as one number, would say 0).
    assert!(!reused(&[("date", &d0), ("cache-control", "max-age=3600"), ("age", "7200, 0")]));
    assert!(!reused(&[("date", &d0), ("cache-control", "max-age=3600"), ("age", "7200"), ("age", "0")]));
    // freshness-max-age-age, cdn-max-age-age.
    assert!(!reused(&[("date", &d0), ("cache-control", "max-age=10"), ("age", "15")]));
    assert!(!reused(&[("date", &d0), ("cdn-cache-control", "max-age=3600"), ("age", "7200")]));
    // age-parse-nonnumeric etc.: an ignored Age leaves the response fresh.
    assert_eq!(ttl(&[("date", &d0), ("cache-control", "max-age=3600"), ("age", "abc")]), Some(3600));
    assert_eq!(ttl(&[("date", &d0), ("cache-control", "max-age=3600"), ("age", "-7200")]), Some(3600));
    assert_eq!(ttl(&[("cache-control", "max-age=60"), ("age", "50")]), Some(10));
}

#[test]
fn initial_age_follows_rfc_9111_4_2_3() {
    let t = |request: i64, response: i64| Timing {
        request_time: now() + Duration::from_secs(request as u64),
        response_time: now() + Duration::from_secs(response as u64),
    };
    let age = |pairs: &[(&str, &str)], timing| initial_age(&h(pairs), timing).as_secs();
    assert_eq!(age(&[], Timing::at(now())), 0);
    assert_eq!(age(&[("age", "30")], t(0, 5)), 35, "Age plus the response delay");
    assert_eq!(age(&[("date", &http_date(-100))], Timing::at(now())), 100, "apparent age from Date");
    assert_eq!(age(&[("date", &http_date(-100)), ("age", "30")], Timing::at(now())), 100, "the larger wins");
    assert_eq!(age(&[("date", &http_date(50))], Timing::at(now())), 0, "a Date in the future is age 0");
    assert_eq!(age(&[("date", "garbage"), ("age", "7")], Timing::at(now())), 7);
    // freshness-expires-age-slow-date / -fast-date.
    assert!(!reused(&[("date", &http_date(-10)), ("expires", &http_date(10)), ("age", "25")]));
    assert!(!reused(&[("date", &http_date(10)), ("expires", &http_date(20)), ("age", "15")]));
}

#[test]
fn cache_control_parsing() {
    // cc-parse and cc-freshness, by id.
    assert_eq!(ttl(&[("cache-control", "max-age=1800, max-age=1")]), Some(1800), "two-fresh-stale-sameline");
    assert_eq!(
        ttl(&[("cache-control", "max-age=1800"), ("cache-control", "max-age=1")]),
        Some(1800),
        "two-fresh-stale-sepline"
    );
    assert_eq!(ttl(&[("cache-control", "max-age=1, max-age=1800")]), Some(1), "two-stale-fresh-sameline");
    assert_eq!(ttl(&[("cache-control", "extension=\"max-age=3600\", max-age=1")]), Some(1), "ignore-quoted");
    assert_eq!(ttl(&[("cache-control", "max-age=1, extension=\"max-age=3600\"")]), Some(1), "ignore-quoted-rev");
    assert_eq!(ttl(&[("cache-control", "extension=\"a, max-age=3600\", max-age=1")]), Some(1), "comma in quotes");
    assert_eq!(ttl(&[("cache-control", "extension=\"max-age=100\", max-age=\"1\"")]), Some(1), "ignore-quoted-all");
    assert_eq!(ttl(&[("cache-control", "max-age=\"3600\"")]), Some(3600), "freshness-max-age-quoted");
    assert_eq!(ttl(&[("cache-control", "max-age=003600")]), Some(3600), "freshness-max-age-leading-zero");
    assert_eq!(ttl(&[("cache-control", "MaX-aGe=3600")]), Some(3600), "freshness-max-age-case-insenstive");
    assert_eq!(ttl(&[("cache-control", "foobar, max-age=3600")]), Some(3600), "freshness-max-age-extension");
    assert_eq!(ttl(&[("cache-control", "max-age=2147483648")]), Some(31_536_000), "max-age-max: max_ttl");
    assert_eq!(ttl(&[("cache-control", "max-age=99999999999")]), Some(31_536_000), "max-age-max-plus: max_ttl");
    assert_eq!(
        ttl(&[("cache-control", "max-age=999999999999999999999999999")]),
        Some(31_536_000),
        "overflow is 2^31, not stale"
    );
    // Invalid freshness information: stale, not ignored (so no default TTL).
    for (cc, id) in [
        ("max-age =3600", "space-before-equals"),
        ("max-age= 3600", "space-after-equals"),
        ("max-age='3600'", "single-quoted"),
        ("max-age=3600.0", "decimal-zero"),
        ("max-age=3600.5", "decimal-five"),
        ("max-age=a3600", "a100"),
        ("max-age=3600a", "100a"),
        ("max-age=-100", "negative"),
        ("max-age", "no value"),
        ("max-age=0", "max-age-0"),
        ("s-maxage=\"x\", max-age=3600", "invalid s-maxage"),
    ] {
        assert!(!reused(&[("cache-control", cc)]), "{id}: {cc}");
    }
    // s-maxage wins for a shared cache, in any order or line.
    assert_eq!(ttl(&[("cache-control", "max-age=3600, s-maxage=1")]), Some(1));
    assert_eq!(ttl(&[("cache-control", "s-maxage=1, max-age=3600")]), Some(1));
    assert_eq!(ttl(&[("cache-control", "max-age=3600"), ("cache-control", "s-maxage=1")]), Some(1));
    assert_eq!(ttl(&[("cache-control", "max-age=1, s-maxage=3600")]), Some(3600));
    assert_eq!(ttl(&[("cache-control", "s-maxage=3600")]), Some(3600));
    // Directive names are case-insensitive.
    assert_eq!(ttl(&[("cache-control", "No-StOrE")]), None, "cc-resp-no-store-case-insensitive");
    assert_eq!(ttl(&[("cache-control", "max-age=10000, No-CaChE")]), None, "cc-resp-no-cache-case-insensitive");
    assert_eq!(ttl(&[("cache-control", "private, max-age=3600")]), None, "cc-resp-private-shared");
    assert_eq!(ttl(&[("cache-control", "max-age=10000, no-store"), ("expires", &http_date(10_000))]), None);
}

#[test]
fn directive_struct() {
    let cc = CacheControl::parse(&h(&[
        ("cache-control", "No-Cache=\"Set-Cookie, X-Secret\", private=x-user"),
        ("cache-control", "stale-while-revalidate=30, stale-while-revalidate=99, proxy-revalidate, s-maxage=9"),
    ]));
    assert_eq!(
        cc,
        CacheControl {
            no_cache_fields: vec![HeaderName::from_static("set-cookie"), HeaderName::from_static("x-secret")],
            private_fields: vec![HeaderName::from_static("x-user")],
            stale_while_revalidate: Some(30),
            must_revalidate: true,
            s_maxage: Some(9),
            ..CacheControl::default()
        }
    );
    // A field list that does not parse is the whole-response form.
    assert!(CacheControl::parse(&h(&[("cache-control", "no-cache=\"a b\"")])).no_cache);
    assert!(CacheControl::parse(&h(&[("cache-control", "private=\"\"")])).private);
    assert!(CacheControl::parse(&h(&[("cache-control", "no-cache=\"unterminated")])).no_cache);
    let many = format!("no-cache=\"{}\"", (0..=MAX_FIELD_NAMES).map(|i| format!("f{i}")).collect::<Vec<_>>().join(","));
    assert!(CacheControl::parse(&h(&[("cache-control", &many)])).no_cache, "too many names: unqualified");
    // Not UTF-8 in a quoted string does not break the other directives.
    let mut m = HeaderMap::new();
    m.append(CACHE_CONTROL, HeaderValue::from_bytes(b"x=\"\xff\", max-age=5").expect("obs-text"));
    assert_eq!(CacheControl::parse(&m).max_age, Some(5));
}

#[test]
fn qualified_no_cache_and_private_store_the_rest() {
    // headers-omit-headers-listed-in-Cache-Control-no-cache(-single).
    let s =
        decide(&[("cache-control", "no-cache=\"a, b\""), ("a", "1"), ("b", "2"), ("cache-control", "max-age=3600")]);
    let Storability::Store(f) = s else { panic!("stored: {s:?}") };
    assert_eq!(f.ttl.as_secs(), 3600);
    assert_eq!(f.omit, vec![HeaderName::from_static("a"), HeaderName::from_static("b")]);
    // `private="set-cookie"`: the cookie is not stored, so the rest may be shared.
    let s = decide(&[("cache-control", "private=\"set-cookie\", max-age=60"), ("set-cookie", "s=1")]);
    assert!(matches!(&s, Storability::Store(f) if f.omit == vec![SET_COOKIE]), "{s:?}");
    assert_eq!(decide(&[("cache-control", "max-age=60"), ("set-cookie", "s=1")]), Storability::Skip("set-cookie"));
}

#[test]
fn expires() {
    let d0 = http_date(0);
    // expires-freshness.
    assert_eq!(ttl(&[("expires", &http_date(30 * 86_400)), ("date", &d0)]), Some(30 * 86_400), "future");
    assert!(!reused(&[("expires", &http_date(-30 * 86_400)), ("date", &d0)]), "freshness-expires-past");
    assert!(!reused(&[("expires", &d0), ("date", &d0)]), "freshness-expires-present");
    assert!(!reused(&[("expires", &http_date(300)), ("date", &http_date(400))]), "freshness-expires-old-date");
    assert_eq!(ttl(&[("date", "foo"), ("expires", &http_date(10))]), Some(10), "freshness-expires-invalid-date");
    assert_eq!(ttl(&[("expires", &http_date(600))]), Some(600), "no Date: the response time");
    // Lenient on case (freshness-expires-wrong-case-*), strict on the rest.
    for e in ["THU, 18 Aug 2050 02:01:18 GMT", "Thu, 18 AUG 2050 02:01:18 GMT", "Thu, 18 Aug 2050 02:01:18 gMT"] {
        assert!(reused(&[("expires", e), ("date", &d0)]), "{e}");
    }
    for e in [
        "0",
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu, 18 Aug 50 02:01:18 GMT",
        "Thu 18 Aug 2050 02:01:18 GMT",
        "Thu, 18  Aug  2050 02:01:18 GMT",
        "Thu, 18-Aug-2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02.01.18 GMT",
        "Thu, 18 Aug 2050 2:01:18 GMT",
    ] {
        assert!(!reused(&[("expires", e), ("date", &d0)]), "invalid Expires is already expired: {e}");
    }
    assert!(reused(&[("expires", "Thursday, 18-Aug-50 02:01:18 GMT"), ("date", &d0)]), "RFC 850 form");
    assert!(reused(&[("expires", "Thu Aug 18 02:01:18 2050"), ("date", &d0)]), "asctime form");
    // The first Expires line counts (RFC 9111 §4.2.1).
    assert_eq!(ttl(&[("date", &d0), ("expires", &http_date(60)), ("expires", "0")]), Some(60));
    // max-age wins over Expires (freshness-max-age-expires(-invalid), -0-expires).
    assert_eq!(ttl(&[("cache-control", "max-age=3600"), ("expires", &http_date(-10_000)), ("date", &d0)]), Some(3600));
    assert_eq!(ttl(&[("cache-control", "max-age=3600"), ("expires", "0"), ("date", &d0)]), Some(3600));
    assert!(!reused(&[("cache-control", "max-age=0"), ("expires", &http_date(10_000)), ("date", &d0)]));
    // Stale on arrival, kept for revalidation when it has validators.
    assert_eq!(ttl(&[("expires", "0")]), None);
    assert_eq!(ttl(&[("expires", "0"), ("etag", "\"x\"")]), Some(0));
}

#[test]
fn vary_star_and_invalid_members_are_never_reused() {
    for lines in [
        vec!["*"],
        vec!["*, *"],
        vec!["*", "*"],
        vec![", *"],
        vec!["", "*"],
        vec!["*, Foo"],
        vec!["Foo, *"],
        vec!["Foo Bar"],
        vec!["Accept-Encoding, \"x\""],
    ] {
        let mut pairs: Vec<(&str, &str)> = lines.iter().map(|l| ("vary", *l)).collect();
        pairs.push(("cache-control", "max-age=60"));
        assert_eq!(decide(&pairs), Storability::Skip("vary-star"), "{lines:?}");
    }
    assert!(reused(&[("vary", "Accept-Encoding, , Origin"), ("cache-control", "max-age=60")]));
}

#[test]
fn cdn_cache_control_is_the_targeted_field() {
    let d0 = http_date(0);
    // cdn-cache-control.mjs, by id.
    assert_eq!(ttl(&[("cdn-cache-control", "max-age=3600")]), Some(3600), "cdn-max-age");
    assert_eq!(ttl(&[("cdn-cache-control", "max-age=99999999999")]), Some(31_536_000), "cdn-max-age-max-plus");
    assert!(!reused(&[("cdn-cache-control", "max-age=0")]), "cdn-max-age-0");
    assert_eq!(ttl(&[("cdn-cache-control", "foobar, max-age=3600")]), Some(3600), "cdn-max-age-extension");
    assert_eq!(
        ttl(&[("cdn-cache-control", "max-age=3600"), ("expires", &http_date(-10_000)), ("date", &d0)]),
        Some(3600),
        "cdn-max-age-expires"
    );
    assert_eq!(ttl(&[("cdn-cache-control", "max-age=3600"), ("expires", "0"), ("date", &d0)]), Some(3600));
    assert!(!reused(&[("cdn-cache-control", "max-age=0"), ("expires", &http_date(10_000)), ("date", &d0)]));
    assert_eq!(ttl(&[("cache-control", "max-age=1"), ("cdn-cache-control", "max-age=3600")]), Some(3600));
    assert_eq!(ttl(&[("cache-control", "max-age=3600"), ("cdn-cache-control", "max-age=1")]), Some(1));
    let fresh_cc = [("cache-control", "max-age=10000"), ("expires", &*http_date(10_000)), ("date", &*d0)];
    for cdn_cc in ["private", "no-cache", "no-store"] {
        let mut pairs = fresh_cc.to_vec();
        pairs.push(("cdn-cache-control", cdn_cc));
        assert_eq!(ttl(&pairs), None, "cdn-{cdn_cc}");
    }
    assert_eq!(ttl(&[("cache-control", "no-store"), ("cdn-cache-control", "max-age=10000")]), Some(10_000));
    assert_eq!(ttl(&[("cache-control", "no-store"), ("cdn-cache-control", "none")]), Some(86_400), "RFC 9213 §3.1");
    // An invalid targeted field is ignored: Cache-Control decides.
    for bad in ["max-age=10000, &&&&&", "max-age=\"10000\"", "max-age =100", "max-age= 100", "MaX-aGe=3600", ""] {
        assert_eq!(
            ttl(&[("cdn-cache-control", bad), ("cache-control", "no-store")]),
            None,
            "cdn-cc-invalid-sh-type-*: {bad:?}"
        );
    }
    assert_eq!(ttl(&[("cache-control", "max-age=1"), ("cdn-cache-control", "max-age =100")]), Some(1));
    assert_eq!(ttl(&[("cdn-cache-control", "max-age=1.5"), ("cache-control", "max-age=7")]), Some(7), "a decimal");
    assert_eq!(ttl(&[("cdn-cache-control", "max-age=-1"), ("cache-control", "max-age=7")]), Some(7), "negative");
    assert_eq!(ttl(&[("cdn-cache-control", "no-store=1"), ("cache-control", "max-age=7")]), Some(7));
    // Lines combine into one dictionary; the last duplicate key wins (RFC 8941).
    assert_eq!(ttl(&[("cdn-cache-control", "max-age=5"), ("cdn-cache-control", "max-age=50")]), Some(50));
    // Qualified no-cache / private with a String.
    let s = decide(&[("cdn-cache-control", "max-age=60, private=\"x-user\""), ("x-user", "1")]);
    assert!(matches!(&s, Storability::Store(f) if f.omit == vec![HeaderName::from_static("x-user")]), "{s:?}");
    // Stale windows and must-revalidate in the targeted field.
    let s = decide(&[("cdn-cache-control", "max-age=1, stale-while-revalidate=30, stale-if-error=60")]);
    assert!(
        matches!(&s, Storability::Store(f) if f.stale_while_revalidate.as_secs() == 30 && f.stale_if_error.as_secs() == 60)
    );
    let s = decide(&[("cdn-cache-control", "max-age=1, stale-if-error=60, must-revalidate")]);
    assert!(matches!(&s, Storability::Store(f) if f.stale_if_error.is_zero()));
}

#[test]
fn an_invalid_targeted_field_keeps_its_restrictions() {
    // The field is invalid (a decimal max-age), so it gives no freshness,
    // but its no-store is the origin's explicit word to CDNs.
    let cc = ("cache-control", "public, max-age=3600");
    assert_eq!(ttl(&[("cdn-cache-control", "no-store, max-age=1.5"), cc]), None, "no-store");
    assert_eq!(ttl(&[("cdn-cache-control", "max-age=\"1\", private"), cc]), None, "private");
    assert_eq!(ttl(&[("cdn-cache-control", "no-cache, s-maxage=-1"), cc]), None, "no-cache");
    assert_eq!(ttl(&[("cdn-cache-control", "no-store, stale-if-error=a"), cc]), None, "a wrong-typed token");
    // Only the restrictions carry over: the freshness is Cache-Control's.
    assert_eq!(ttl(&[("cdn-cache-control", "max-age=1.5, stale-if-error=600"), cc]), Some(3600));
    let s = decide(&[("cdn-cache-control", "max-age=1.5, stale-if-error=600"), cc]);
    assert!(
        matches!(&s, Storability::Store(f) if f.stale_if_error.is_zero()),
        "no window from an invalid field: {s:?}"
    );
    let s = decide(&[
        ("cdn-cache-control", "must-revalidate, max-age=\"5\""),
        ("cache-control", "max-age=60, stale-while-revalidate=600, stale-if-error=600"),
    ]);
    assert!(
        matches!(&s, Storability::Store(f) if f.ttl.as_secs() == 60 && f.stale_while_revalidate.is_zero() && f.stale_if_error.is_zero()),
        "must-revalidate still closes the stale windows: {s:?}"
    );
    let s = decide(&[("cdn-cache-control", "private=\"x-user\", max-age=1.5"), ("x-user", "1"), cc]);
    assert!(
        matches!(&s, Storability::Store(f) if f.ttl.as_secs() == 3600 && f.omit == vec![HeaderName::from_static("x-user")]),
        "a qualified private still keeps its field out: {s:?}"
    );
    // A restrictive directive of the wrong type is not consumed (RFC 9213 §2.1),
    // and `?0` is false: neither restricts anything.
    assert_eq!(ttl(&[("cdn-cache-control", "no-store=1, max-age=1.5"), cc]), Some(3600));
    assert_eq!(ttl(&[("cdn-cache-control", "no-store=?0, max-age=1.5"), cc]), Some(3600));
    // A field that is not a Dictionary at all gives nothing, not even its no-store.
    assert_eq!(ttl(&[("cdn-cache-control", "no-store, &&&"), cc]), Some(3600), "cdn-cc-invalid-sh-type-unknown");
    // The CloudFront rule still holds: a min_ttl stores it anyway.
    let bounded = TtlBounds { min: Duration::from_secs(30), ..B };
    let s =
        storability(200, &h(&[("cdn-cache-control", "no-store, max-age=1.5"), cc]), bounded, &cdn(), Timing::at(now()));
    assert!(matches!(&s, Storability::Store(f) if f.ttl.as_secs() == 30), "{s:?}");

    // Over a list of targeted fields: a discarded field's restrictions also
    // bind the field that is selected after it.
    let targets = [HeaderName::from_static("studio-cache-control"), HeaderName::from_static("cdn-cache-control")];
    let pairs = h(&[("studio-cache-control", "no-store, max-age=1.5"), ("cdn-cache-control", "max-age=600")]);
    assert_eq!(storability(200, &pairs, B, &targets, Timing::at(now())), Storability::Skip("cache-control"));
    let pairs = h(&[("studio-cache-control", "max-age=1.5"), ("cdn-cache-control", "max-age=600")]);
    assert!(
        matches!(storability(200, &pairs, B, &targets, Timing::at(now())), Storability::Store(f) if f.ttl.as_secs() == 600)
    );

    assert_eq!(
        CacheControl::parse_targeted(
            &h(&[("cdn-cache-control", "no-store, private=\"a\", max-age=1.5, s-maxage=9")]),
            &cdn()[0]
        ),
        TargetedField::Invalid(CacheControl {
            no_store: true,
            private_fields: vec![HeaderName::from_static("a")],
            ..CacheControl::default()
        }),
        "only the restrictions are kept"
    );
    assert_eq!(CacheControl::parse_targeted(&h(&[]), &cdn()[0]), TargetedField::Ignored);
    assert_eq!(CacheControl::parse_targeted(&h(&[("cdn-cache-control", "a, &")]), &cdn()[0]), TargetedField::Ignored);
}

/// The stale windows with `s-maxage` (the decision in the module docs).
#[test]
fn s_maxage_keeps_explicit_stale_windows_and_revalidate_directives_close_them() {
    let windows = |pairs: &[(&str, &str)]| match decide(pairs) {
        Storability::Store(f) => (f.ttl.as_secs(), f.stale_while_revalidate.as_secs(), f.stale_if_error.as_secs()),
        Storability::Skip(r) => panic!("skipped: {r}"),
    };
    let cc = |v| [("cache-control", v)];
    // Explicit windows beside s-maxage are the origin's instruction.
    assert_eq!(windows(&cc("s-maxage=60, stale-while-revalidate=600, stale-if-error=600")), (60, 600, 600));
    assert_eq!(windows(&cc("s-maxage=1, stale-while-revalidate=59")), (1, 59, 0), "Next.js's CDN header");
    assert_eq!(windows(&cc("max-age=5, s-maxage=60, stale-if-error=30")), (60, 0, 30));
    // No window, no stale: s-maxage alone never serves stale.
    assert_eq!(windows(&cc("s-maxage=60")), (60, 0, 0));
    // must-revalidate and proxy-revalidate (the same for this shared cache) close both.
    for closing in ["must-revalidate", "proxy-revalidate", "Proxy-Revalidate"] {
        let v = format!("s-maxage=60, stale-while-revalidate=600, stale-if-error=600, {closing}");
        assert_eq!(windows(&[("cache-control", &v)]), (60, 0, 0), "{closing}");
        let v = format!("{closing}, max-age=60, stale-while-revalidate=600, stale-if-error=600");
        assert_eq!(windows(&[("cache-control", &v)]), (60, 0, 0), "{closing} first, without s-maxage");
    }
    // In a targeted field too.
    for closing in ["must-revalidate", "proxy-revalidate"] {
        let v = format!("s-maxage=60, stale-while-revalidate=600, stale-if-error=600, {closing}");
        assert_eq!(windows(&[("cdn-cache-control", &v)]), (60, 0, 0), "CDN-Cache-Control {closing}");
    }
    assert_eq!(
        windows(&[("cdn-cache-control", "s-maxage=60, stale-while-revalidate=600, stale-if-error=600")]),
        (60, 600, 600)
    );
    // no-cache forbids stale responses (RFC 9111 §4.2.4): when a min_ttl
    // stores it anyway (CloudFront), it is never served stale.
    let bounded = TtlBounds { min: Duration::from_secs(30), ..B };
    let s = storability(
        200,
        &h(&[("cache-control", "no-cache, stale-while-revalidate=600, stale-if-error=600")]),
        bounded,
        &cdn(),
        Timing::at(now()),
    );
    assert!(
        matches!(&s, Storability::Store(f) if f.ttl.as_secs() == 30 && f.stale_while_revalidate.is_zero() && f.stale_if_error.is_zero()),
        "{s:?}"
    );
}

#[test]
fn target_list_order_and_switching_it_off() {
    let headers = h(&[
        ("cache-control", "max-age=1"),
        ("cdn-cache-control", "max-age=20"),
        ("examplecdn-cache-control", "max-age=300"),
    ]);
    let list = |names: &[&'static str]| names.iter().map(|n| HeaderName::from_static(n)).collect::<Vec<_>>();
    let t = |targets: &[HeaderName]| match storability(200, &headers, B, targets, Timing::at(now())) {
        Storability::Store(f) => f.ttl.as_secs(),
        Storability::Skip(r) => panic!("skipped: {r}"),
    };
    assert_eq!(t(&list(&["examplecdn-cache-control", "cdn-cache-control"])), 300, "first in the list wins");
    assert_eq!(t(&list(&["cdn-cache-control", "examplecdn-cache-control"])), 20);
    assert_eq!(t(&list(&["absent-cache-control", "cdn-cache-control"])), 20, "absent fields are skipped");
    assert_eq!(t(&[]), 1, "an empty list obeys Cache-Control only");
}

#[test]
fn ttl_bounds_apply_to_every_source() {
    let bounded =
        TtlBounds { min: Duration::from_secs(30), default: Duration::from_secs(100), max: Duration::from_secs(600) };
    let t = |pairs: &[(&str, &str)]| match storability(200, &h(pairs), bounded, &cdn(), Timing::at(now())) {
        Storability::Store(f) => Some(f.ttl.as_secs()),
        Storability::Skip(_) => None,
    };
    assert_eq!(t(&[("cache-control", "max-age=5")]), Some(30));
    assert_eq!(t(&[("cache-control", "max-age=5000")]), Some(600));
    assert_eq!(t(&[("cdn-cache-control", "max-age=5")]), Some(30));
    assert_eq!(t(&[("cdn-cache-control", "max-age=5000")]), Some(600));
    assert_eq!(t(&[("cdn-cache-control", "stale-if-error=5")]), Some(100), "no lifetime: default_ttl");
    assert_eq!(t(&[]), Some(100));
    assert_eq!(t(&[("cache-control", "private")]), Some(30), "CloudFront: min_ttl overrides private");
    assert_eq!(t(&[("cdn-cache-control", "no-store")]), Some(30));
    assert_eq!(t(&[("cache-control", "max-age=5000"), ("age", "100")]), Some(500), "the age counts after the clamp");
}

#[test]
fn temporary_redirects_need_an_explicit_lifetime() {
    let at = |status: u16, pairs: &[(&str, &str)]| match storability(status, &h(pairs), B, &cdn(), Timing::at(now())) {
        Storability::Store(f) => Some(f.ttl.as_secs()),
        Storability::Skip(_) => None,
    };
    let location = ("location", "/elsewhere");
    // 301 is heuristically cacheable: the default TTL without headers.
    assert_eq!(at(301, &[location]), Some(B.default.as_secs()));
    for status in [302, 303, 307] {
        assert_eq!(at(status, &[location]), None, "{status} without a lifetime");
        assert_eq!(at(status, &[location, ("cache-control", "public")]), None, "{status}: public is no lifetime");
        assert_eq!(at(status, &[location, ("cache-control", "max-age=60")]), Some(60), "{status}");
        assert_eq!(at(status, &[location, ("cache-control", "s-maxage=70")]), Some(70), "{status}");
        assert_eq!(at(status, &[location, ("cdn-cache-control", "max-age=80")]), Some(80), "{status}");
        assert_eq!(
            at(status, &[location, ("date", &http_date(0)), ("expires", &http_date(90))]),
            Some(90),
            "{status}: Expires"
        );
    }
    // Other statuses are not stored whatever they say (errors have their own rules).
    assert_eq!(at(500, &[("cache-control", "max-age=60")]), None);
    assert_eq!(at(206, &[("cache-control", "max-age=60")]), None);
}

#[test]
fn statuses_cookies_and_windows() {
    assert_eq!(storability(500, &h(&[]), B, &cdn(), Timing::at(now())), Storability::Skip("status"));
    assert_eq!(ttl(&[("set-cookie", "a=b")]), None);
    let s = decide(&[("cache-control", "max-age=1, stale-while-revalidate=30, stale-if-error=600")]);
    assert_eq!(
        s,
        Storability::Store(Freshness {
            ttl: Duration::from_secs(1),
            initial_age: Duration::ZERO,
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(600),
            omit: Vec::new(),
        })
    );
    let s = decide(&[("cache-control", "max-age=1, stale-if-error=600, must-revalidate")]);
    assert!(matches!(s, Storability::Store(f) if f.stale_if_error.is_zero()));
    let s = decide(&[("cache-control", "max-age=1, stale-if-error=600, proxy-revalidate")]);
    assert!(matches!(s, Storability::Store(f) if f.stale_if_error.is_zero()));
    let cc = "max-age=60, stale-while-revalidate=18446744073709551615, stale-if-error=18446744073709551615";
    let s = decide(&[("cache-control", cc)]);
    let max = Duration::from_secs(MAX_STALE_SECS);
    assert!(matches!(s, Storability::Store(f) if f.stale_while_revalidate == max && f.stale_if_error == max));
}

#[test]
fn list_members_respect_quotes() {
    let m = |s: &str| list_members(s.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>();
    assert_eq!(m(" a , b=\"x, y\" ,, c=\"q\\\"uote, z\" "), vec!["a", "b=\"x, y\"", "c=\"q\\\"uote, z\""]);
    assert_eq!(m(""), Vec::<String>::new());
    assert_eq!(m(",,"), Vec::<String>::new());
    assert_eq!(m("a=\"unterminated, b"), vec!["a=\"unterminated, b"]);
}

/// Arbitrary field values through every parser of this crate: no panic, and
/// what parses keeps its invariants (a cheap stand-in for fuzzing, run with
/// every test).
#[test]
fn parsers_survive_arbitrary_values() {
    use crate::conditional::{RangeAnswer, StoredDates, if_range_holds, not_modified, range};
    const ALPHABET: &[u8] = b"0123456789,;=\" \t\\-:/?()*W.aAgGmMsTxXeE_%\xff\xc3!#";
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let names = ["cache-control", "cdn-cache-control", "age", "expires", "date", "vary", "etag", "last-modified"];
    let req_names = ["range", "if-none-match", "if-modified-since", "if-range"];
    for _ in 0..20_000 {
        let len = (next() % 40) as usize;
        let value: Vec<u8> = (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect();
        let Ok(v) = HeaderValue::from_bytes(&value) else { continue };
        let mut m = HeaderMap::new();
        for n in names {
            m.append(n, v.clone());
        }
        let cc = CacheControl::parse(&m);
        assert!(cc.max_age.is_none_or(|a| a <= DELTA_SECONDS_MAX));
        std::hint::black_box(CacheControl::parse_targeted(&m, &HeaderName::from_static("cdn-cache-control")));
        assert!(age_of(&m).is_none_or(|a| a.as_secs() <= DELTA_SECONDS_MAX));
        std::hint::black_box(storability(200, &m, B, &cdn(), Timing::at(now())));
        std::hint::black_box(date::parse(&value));
        if let Ok(members) = structured::parse_dictionary(&value) {
            assert!(members.iter().all(|(k, _)| !k.is_empty()), "{value:?}");
        }
        std::hint::black_box(list_members(&value).count());
        let mut req = HeaderMap::new();
        for n in req_names {
            req.append(n, v.clone());
        }
        if let RangeAnswer::Partial { start, end } = range(&req, 1000) {
            assert!(start <= end && end < 1000, "{value:?}");
        }
        let dates = StoredDates::of(&m, now());
        std::hint::black_box(not_modified(&req, &m, &dates));
        std::hint::black_box(if_range_holds(&req, &m, &dates));
    }
}
