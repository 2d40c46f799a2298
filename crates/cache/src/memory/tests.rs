use super::*;
use crate::disk::DiskSettings;
use crate::fill::FillEnd;
use bytes::Bytes;

fn settings(memory_bytes: u64) -> CacheSettings {
    CacheSettings { memory_bytes, max_object_bytes: memory_bytes }
}

fn object(body: &'static [u8], ttl: Duration, vary: Vec<(HeaderName, Option<HeaderValue>)>) -> Object {
    let received = SystemTime::now();
    Object {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: Arc::new(Fill::complete(vec![Bytes::from_static(body)])),
        content_length: Some(body.len() as u64),
        received,
        dates: StoredDates { last_modified: None, date: received },
        initial_age: Duration::ZERO,
        fresh_until: Instant::now() + ttl,
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        namespace: "d".into(),
        generation: 1,
        viewer_target: "/a".into(),
        origin_target: "/a".into(),
        vary,
        disk: None,
    }
}

fn all(_: &Object) -> bool {
    true
}

#[tokio::test]
async fn one_leader_and_waiters_get_its_object() {
    let cache = Cache::new(settings(1 << 20));
    let req = HeaderMap::new();
    let Lookup::Miss(leader) = cache.lookup("k", &req, Instant::now(), all) else { panic!("first lookup must miss") };
    let Lookup::Wait(pending) = cache.lookup("k", &req, Instant::now(), all) else { panic!("second must wait") };
    let waiter = tokio::spawn(async move { pending.wait().await });
    let stored = leader.store(object(b"body", Duration::from_secs(60), Vec::new()));
    match waiter.await.expect("waiter") {
        Outcome::Stored(o) => assert!(Arc::ptr_eq(&o, &stored)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(cache.lookup("k", &req, Instant::now(), all), Lookup::Fresh(_)));
}

#[tokio::test]
async fn a_dropped_leader_fails_its_waiters_and_frees_the_key() {
    let cache = Cache::new(settings(1 << 20));
    let req = HeaderMap::new();
    let Lookup::Miss(leader) = cache.lookup("k", &req, Instant::now(), all) else { panic!("miss") };
    let Lookup::Wait(pending) = cache.lookup("k", &req, Instant::now(), all) else { panic!("wait") };
    drop(leader);
    assert!(matches!(pending.wait().await, Outcome::Failed));
    assert!(matches!(cache.lookup("k", &req, Instant::now(), all), Lookup::Miss(_)), "the key is free again");
}

#[test]
fn stale_objects_elect_one_revalidator() {
    let cache = Cache::new(settings(1 << 20));
    let req = HeaderMap::new();
    let Lookup::Miss(leader) = cache.lookup("k", &req, Instant::now(), all) else { panic!("miss") };
    leader.store(object(b"old", Duration::ZERO, Vec::new()));
    let first = cache.lookup("k", &req, Instant::now(), all);
    assert!(matches!(&first, Lookup::Stale { leader: Some(_), pending: None, .. }));
    let second = cache.lookup("k", &req, Instant::now(), all);
    assert!(matches!(&second, Lookup::Stale { leader: None, pending: Some(_), .. }));
}

#[test]
fn variants_are_kept_apart() {
    let cache = Cache::new(settings(1 << 20));
    let name = HeaderName::from_static("accept-encoding");
    let mut gzip = HeaderMap::new();
    gzip.insert(&name, HeaderValue::from_static("gzip"));
    let plain = HeaderMap::new();
    let Lookup::Miss(l) = cache.lookup("k", &gzip, Instant::now(), all) else { panic!("miss") };
    l.store(object(b"gz", Duration::from_secs(60), vec![(name.clone(), Some(HeaderValue::from_static("gzip")))]));
    assert!(matches!(cache.lookup("k", &gzip, Instant::now(), all), Lookup::Fresh(_)));
    let Lookup::Miss(l) = cache.lookup("k", &plain, Instant::now(), all) else { panic!("other variant misses") };
    l.store(object(b"plain", Duration::from_secs(60), vec![(name, None)]));
    assert_eq!(cache.usage().1, 2);
    match cache.lookup("k", &plain, Instant::now(), all) {
        Lookup::Fresh(o) => assert_eq!(o.body.len(), 5),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn least_recently_used_goes_first() {
    let cache = Cache::new(settings(3 * (OVERHEAD + 100)));
    let req = HeaderMap::new();
    let body: &'static [u8] = &[7u8; 100];
    for k in ["a", "b", "c"] {
        let Lookup::Miss(l) = cache.lookup(k, &req, Instant::now(), all) else { panic!("miss {k}") };
        l.store(object(body, Duration::from_secs(60), Vec::new()));
    }
    assert!(matches!(cache.lookup("a", &req, Instant::now(), all), Lookup::Fresh(_)), "touch a");
    let Lookup::Miss(l) = cache.lookup("d", &req, Instant::now(), all) else { panic!("miss d") };
    l.store(object(body, Duration::from_secs(60), Vec::new()));
    assert_eq!(cache.usage(), (3 * (OVERHEAD + 100), 3));
    assert!(matches!(cache.lookup("b", &req, Instant::now(), all), Lookup::Miss(_)), "b was least recently used");
}

#[test]
fn invalid_objects_are_dropped_on_lookup_and_purge() {
    let cache = Cache::new(settings(1 << 20));
    let req = HeaderMap::new();
    for k in ["x", "y"] {
        let Lookup::Miss(l) = cache.lookup(k, &req, Instant::now(), all) else { panic!("miss") };
        l.store(object(b"v", Duration::from_secs(60), Vec::new()));
    }
    assert!(matches!(cache.lookup("x", &req, Instant::now(), |o| o.generation > 1), Lookup::Miss(_)));
    assert_eq!(cache.purge(|k, _| k == "y"), 1);
    assert_eq!(cache.usage(), (0, 0));
}

#[tokio::test]
async fn unknown_sizes_are_settled_when_the_fill_ends() {
    let cache = Cache::new(settings(1 << 20));
    let req = HeaderMap::new();
    let Lookup::Miss(l) = cache.lookup("k", &req, Instant::now(), all) else { panic!("miss") };
    let mut o = object(b"", Duration::from_secs(60), Vec::new());
    o.body = Arc::new(Fill::new());
    o.content_length = None;
    let stored = l.store(o);
    assert_eq!(cache.usage().0, OVERHEAD);
    stored.body.push(Bytes::from_static(&[0u8; 1000]));
    stored.body.finish(FillEnd::Complete);
    cache.settle("k", &stored);
    assert_eq!(cache.usage().0, OVERHEAD + 1000);
    cache.remove("k", &stored);
    assert_eq!(cache.usage(), (0, 0));
}

fn disk_settings(dir: &std::path::Path, max_bytes: u64) -> DiskSettings {
    DiskSettings { dir: dir.to_owned(), max_bytes, max_object_bytes: max_bytes }
}

fn disk_object(cache: &Cache, body: &[u8], ttl: Duration) -> Object {
    let (fill, r) = cache.disk().expect("disk tier").create().expect("create");
    for c in body.chunks(1000) {
        fill.push(Bytes::copy_from_slice(c));
    }
    fill.finish(FillEnd::Complete);
    let mut o = object(b"", ttl, Vec::new());
    o.body = Arc::new(fill);
    o.content_length = Some(body.len() as u64);
    o.headers.insert(http::header::ETAG, HeaderValue::from_static("\"e\""));
    o.disk = Some(r);
    o
}

#[test]
fn the_disk_tier_survives_a_restart_and_keeps_bodies_out_of_memory() {
    let dir = std::env::temp_dir().join(format!("sg-disk-tier-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let body: Vec<u8> = (0..50_000u32).map(|i| (i % 241) as u8).collect();
    {
        let (cache, found) = Cache::with_disk(settings(10_000), disk_settings(&dir, 1 << 20)).expect("open");
        assert_eq!(found, 0);
        let Lookup::Miss(l) = cache.lookup("big", &HeaderMap::new(), Instant::now(), all) else { panic!("miss") };
        let stored = l.store(disk_object(&cache, &body, Duration::from_secs(600)));
        cache.settle("big", &stored);
        assert_eq!(cache.usage(), (OVERHEAD, 1), "memory holds the index entry only");
        assert_eq!(cache.disk_usage(), 50_000);
        // An interrupted fill: a body without metadata.
        let (fill, _) = cache.disk().expect("disk").create().expect("create");
        fill.push(Bytes::from_static(b"partial"));
    }
    let (cache, found) = Cache::with_disk(settings(10_000), disk_settings(&dir, 1 << 20)).expect("reopen");
    assert_eq!(found, 1, "the whole object is back, the partial one is gone");
    let Lookup::Fresh(o) = cache.lookup("big", &HeaderMap::new(), Instant::now(), all) else {
        panic!("hit after restart")
    };
    assert_eq!(o.headers.get(http::header::ETAG).map(|v| v.as_bytes()), Some(&b"\"e\""[..]));
    let mut out = Vec::new();
    while let crate::fill::Read::Data(b) = o.body.read_at(out.len() as u64) {
        out.extend_from_slice(&b);
    }
    assert_eq!(out, body);
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 2, "one body and one meta file");
    drop(o);
    cache.purge(|_, _| true);
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0, "purged objects lose their files");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn the_disk_budget_evicts_least_recently_used_files() {
    let dir = std::env::temp_dir().join(format!("sg-disk-evict-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (cache, _) = Cache::with_disk(settings(1 << 20), disk_settings(&dir, 25_000)).expect("open");
    let body = vec![1u8; 10_000];
    for k in ["a", "b", "c"] {
        let Lookup::Miss(l) = cache.lookup(k, &HeaderMap::new(), Instant::now(), all) else { panic!("miss") };
        let o = l.store(disk_object(&cache, &body, Duration::from_secs(60)));
        cache.settle(k, &o);
    }
    assert_eq!(cache.disk_usage(), 20_000, "a was evicted to stay under 25,000 bytes");
    assert!(matches!(cache.lookup("a", &HeaderMap::new(), Instant::now(), all), Lookup::Miss(_)));
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 4);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// An origin's huge `Age` or stale windows never overflow the clock.
#[test]
fn huge_ages_and_windows_saturate() {
    let mut o = object(b"x", Duration::ZERO, Vec::new());
    o.initial_age = Duration::MAX;
    o.stale_while_revalidate = Duration::MAX;
    o.stale_if_error = Duration::MAX;
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    assert_eq!(o.age(later), u64::MAX);
    let now = std::time::Instant::now();
    assert!(o.within_stale_while_revalidate(now) && o.within_stale_if_error(now));
}

fn req(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(*k, HeaderValue::from_static(v));
    }
    m
}

#[test]
fn vary_values_compare_as_lists() {
    let response = req(&[("vary", "Foo"), ("vary", ", accept-language,foo")]);
    let stored = vary_values(&response, &req(&[("foo", "1,2"), ("accept-language", "en")]));
    assert_eq!(
        stored,
        vec![
            (HeaderName::from_static("foo"), Some(HeaderValue::from_static("1, 2"))),
            (HeaderName::from_static("accept-language"), Some(HeaderValue::from_static("en"))),
        ],
        "names from every Vary line, once each; values normalised"
    );
    let o = object(b"x", Duration::from_secs(60), stored);
    // vary-normalise-space, vary-normalise-combine.
    assert!(o.matches_vary(&req(&[("foo", " 1, 2 "), ("accept-language", "en")])));
    assert!(o.matches_vary(&req(&[("foo", "1"), ("foo", "2"), ("accept-language", "en")])));
    assert!(o.matches_vary(&req(&[("foo", "1,"), ("foo", ",2"), ("accept-language", "en")])));
    // vary-no-match, vary-omit, vary-3-order.
    assert!(!o.matches_vary(&req(&[("foo", "2, 1"), ("accept-language", "en")])), "order is kept");
    assert!(!o.matches_vary(&req(&[("foo", "1"), ("accept-language", "en")])));
    assert!(!o.matches_vary(&req(&[("foo", "1, 2")])), "a header the variant had is missing");
    assert!(!o.matches_vary(&req(&[("foo", "1, 2"), ("accept-language", "en"), ("accept-language", "de")])));
    // Absent matches only absent (vary-3-omit); an empty value is not absent.
    let absent = object(b"x", Duration::from_secs(60), vary_values(&req(&[("vary", "bar")]), &HeaderMap::new()));
    assert!(absent.matches_vary(&HeaderMap::new()));
    assert!(!absent.matches_vary(&req(&[("bar", "")])));
    assert!(!absent.matches_vary(&req(&[("bar", "1")])));
}
