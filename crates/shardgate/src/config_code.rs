//! Configuration as code: `shardgate export`, `diff` and `apply` keep a
//! gateway's resources as files in a repository (one YAML file per
//! resource, `DIR/<kind>/<id>.yaml`, see [`files`]) and bring a gateway to
//! what the files say, through its Admin API.
//!
//! Both sides are compared as the Admin API stores them: each value goes
//! through the model's wire form (what a PUT stores), without the fields
//! the server owns (`create_time`, `update_time`, an invalidation's
//! `status`), as JSON values, never as text.
//!
//! Rules:
//! - **Order.** Kinds are walked in [`ResourceKind::ALL`] order. Creates
//!   and updates run so that a resource comes after every resource it
//!   refers to that is also being written (an upstream before the route
//!   that names it, a staging distribution before the policy that names it
//!   before the distribution that uses the policy), kind order otherwise;
//!   deletes (`--prune`) run the other way round (a route before its
//!   upstream), after every write.
//! - **Private keys.** A key is never compared: the Admin API refuses a key
//!   that does not match its certificate, so an SSL object whose
//!   certificates are unchanged has the same key pairs. An SSL file without
//!   `key`/`keys` (an export without `--include-secrets`) is applied only
//!   where the SSL object exists: equal otherwise, it is left as it is
//!   ("unchanged (no key in file)"); different, it is an error for that
//!   file (a certificate change needs its key); absent, an error too.
//! - **Invalidations** cannot change once created and are history: one
//!   that exists is unchanged whatever its file says, and `--prune` never
//!   deletes one (delete it through the Admin API if needed).
//! - `apply` checks every file and plans everything before its first
//!   write; a problem found then changes nothing. It stops at the first
//!   Admin API error, naming the file and the Admin API's `error_msg`, and
//!   says what was applied before it. A second apply changes nothing.

mod files;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Map, Value};
use shardgate_model::resource::Wire;
use shardgate_model::{Invalid, ResourceId, ResourceKind};

use crate::admin_client::AdminClient;

/// Fields the Admin API sets on every resource: never configuration.
const SERVER_TIMES: [&str; 2] = ["create_time", "update_time"];
/// An SSL object's private keys.
const KEY_FIELDS: [&str; 2] = ["key", "keys"];
/// When stderr is not a terminal, one progress line per this many changes.
const PROGRESS_EVERY: usize = 100;

/// Removes what the server owns from a resource's value: the timestamps,
/// and an invalidation's `status` (computed by the Admin API on reads).
pub(crate) fn strip_server_owned(kind: ResourceKind, obj: &mut Map<String, Value>) {
    for f in SERVER_TIMES {
        obj.remove(f);
    }
    if kind == ResourceKind::Invalidations {
        obj.remove("status");
    }
}

/// The value as the Admin API would store it (the model's wire form), and
/// the resources it refers to.
fn canonical(kind: ResourceKind, value: &Value) -> Result<(Value, Vec<(ResourceKind, ResourceId)>), Invalid> {
    let wire = Wire::from_value(kind, value.clone())?;
    let refs = wire.references().into_iter().map(|r| (r.kind, r.id)).collect();
    Ok((wire.to_value(), refs))
}

/// What is compared: an SSL object's private keys left out.
fn comparable(kind: ResourceKind, value: &Value) -> Value {
    let mut v = value.clone();
    if kind == ResourceKind::Ssls
        && let Value::Object(obj) = &mut v
    {
        for f in KEY_FIELDS {
            obj.remove(f);
        }
    }
    v
}

/// The top-level fields whose values differ, sorted.
fn differing_fields(a: &Value, b: &Value) -> Vec<String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            names.into_iter().filter(|n| a.get(*n) != b.get(*n)).cloned().collect()
        }
        _ if a == b => Vec::new(),
        _ => vec!["(the whole value)".into()],
    }
}

/// What apply does with one resource.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// In the files only: PUT.
    Create,
    /// In both, different: PUT; the fields that differ.
    Update(Vec<String>),
    /// In both and equal (or left alone, with why).
    Unchanged(Option<&'static str>),
    /// On the gateway only: deleted by `--prune`.
    OnlyLive,
    /// An invalidation on the gateway only: history, never pruned.
    History,
    /// The file cannot be applied, and why.
    Refused(String),
}

/// One resource of the plan.
#[derive(Debug)]
struct Entry {
    kind: ResourceKind,
    id: ResourceId,
    step: Step,
    /// The file, when there is one.
    path: Option<PathBuf>,
    /// What a PUT sends.
    body: Value,
    /// What it refers to: the file's value for writes, the live one's for deletes.
    refs: Vec<(ResourceKind, ResourceId)>,
}

impl Entry {
    fn name(&self) -> String {
        format!("{}/{}", self.kind, self.id)
    }

    /// `kind/id (path)`, for messages about a file.
    fn named(&self) -> String {
        match &self.path {
            Some(p) => format!("{} ({})", self.name(), p.display()),
            None => format!("{} (only on the gateway)", self.name()),
        }
    }
}

/// Every resource of the files and of the gateway, in kind order, then id.
#[derive(Debug, Default)]
struct Plan {
    entries: Vec<Entry>,
}

impl Plan {
    fn count(&self, f: impl Fn(&Step) -> bool) -> usize {
        self.entries.iter().filter(|e| f(&e.step)).count()
    }
    fn creates(&self) -> usize {
        self.count(|s| *s == Step::Create)
    }
    fn updates(&self) -> usize {
        self.count(|s| matches!(s, Step::Update(_)))
    }
    fn unchanged(&self) -> usize {
        self.count(|s| matches!(s, Step::Unchanged(_)))
    }
    fn only_live(&self) -> usize {
        self.count(|s| *s == Step::OnlyLive)
    }
    fn history(&self) -> usize {
        self.count(|s| *s == Step::History)
    }
    fn refused(&self) -> usize {
        self.count(|s| matches!(s, Step::Refused(_)))
    }
}

/// Each kind's live resources: id → value without the server-owned fields.
type Live = Vec<(ResourceKind, BTreeMap<ResourceId, Value>)>;

/// Every resource on the gateway, kind by kind in [`ResourceKind::ALL`]
/// order (each kind one listing); with `secrets`, SSL objects with their keys.
async fn fetch_live(client: &mut AdminClient, secrets: bool) -> anyhow::Result<Live> {
    let mut out = Vec::new();
    for kind in ResourceKind::ALL {
        let list = client.list(kind, secrets && kind == ResourceKind::Ssls).await?;
        let mut by_id = BTreeMap::new();
        for (id, mut value) in list {
            if let Value::Object(obj) = &mut value {
                strip_server_owned(kind, obj);
                obj.insert("id".into(), Value::String(id.to_string()));
            }
            by_id.insert(id, value);
        }
        out.push((kind, by_id));
    }
    Ok(out)
}

/// Compares the files with the gateway. Files the model refuses are
/// errors naming the file.
fn plan(files: &files::Files, live: &Live) -> Result<Plan, Vec<String>> {
    let mut errors = Vec::new();
    let mut plan = Plan::default();
    let none = BTreeMap::new();
    for (kind, live) in live {
        let kind = *kind;
        let in_files = files.of(kind).unwrap_or(&none);
        let mut entries = Vec::new();
        for (id, f) in in_files {
            let (body, refs) = match canonical(kind, &f.value) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{}: invalid {}: {e}", f.path.display(), kind.singular()));
                    continue;
                }
            };
            let has_key = kind == ResourceKind::Ssls && KEY_FIELDS.iter().any(|k| f.value.get(k).is_some());
            let step = match live.get(id) {
                None if kind == ResourceKind::Ssls && !has_key => Step::Refused(format!(
                    "the file has no private key and the gateway has no ssl {id}: an SSL object is created with its key (export with --include-secrets)"
                )),
                None => Step::Create,
                Some(l) => {
                    let l = canonical(kind, l).map_or_else(|_| l.clone(), |c| c.0);
                    let fields = differing_fields(&comparable(kind, &body), &comparable(kind, &l));
                    if kind == ResourceKind::Invalidations {
                        // CloudFront: an invalidation cannot change once created.
                        Step::Unchanged(
                            (!fields.is_empty())
                                .then_some("invalidations cannot change once created; the stored one is kept"),
                        )
                    } else if fields.is_empty() {
                        Step::Unchanged((kind == ResourceKind::Ssls && !has_key).then_some("no key in file"))
                    } else if kind == ResourceKind::Ssls && !has_key {
                        Step::Refused(format!(
                            "differs from the gateway's ssl in {} but the file has no private key: a certificate change needs its key",
                            fields.join(", ")
                        ))
                    } else {
                        Step::Update(fields)
                    }
                }
            };
            entries.push(Entry { kind, id: id.clone(), step, path: Some(f.path.clone()), body, refs });
        }
        for (id, value) in live.iter().filter(|(id, _)| !in_files.contains_key(*id)) {
            let refs = canonical(kind, value).map(|c| c.1).unwrap_or_default();
            let step = if kind == ResourceKind::Invalidations { Step::History } else { Step::OnlyLive };
            entries.push(Entry { kind, id: id.clone(), step, path: None, body: value.clone(), refs });
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        plan.entries.extend(entries);
    }
    if errors.is_empty() { Ok(plan) } else { Err(errors) }
}

/// Reads the directory and the gateway and plans; problems in the files
/// are printed and fail the command.
async fn load_plan(client: &mut AdminClient, dir: &Path) -> anyhow::Result<Plan> {
    let files = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => files::read_dir(dir),
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(e) => bail!("{}: {e}", dir.display()),
    };
    let files = files.map_err(|errors| refused_files(&errors))?;
    let live = fetch_live(client, false).await?;
    plan(&files, &live).map_err(|errors| refused_files(&errors))
}

fn refused_files(errors: &[String]) -> anyhow::Error {
    for e in errors {
        eprintln!("shardgate: {e}");
    }
    anyhow::anyhow!("{} problem(s) in the files (above); nothing was changed", errors.len())
}

/// The plan's lines: `+` create, `~` update (the fields), `-` only on the
/// gateway, `=` unchanged with a note, `!` refused.
fn print_plan(plan: &Plan) {
    for e in &plan.entries {
        match &e.step {
            Step::Create => println!("+ {}", e.name()),
            Step::Update(fields) => println!("~ {}: {}", e.name(), fields.join(", ")),
            Step::OnlyLive => println!("- {}", e.name()),
            Step::Unchanged(Some(note)) => println!("= {}: unchanged ({note})", e.name()),
            Step::Refused(why) => println!("! {}: {why}", e.named()),
            Step::Unchanged(None) | Step::History => {}
        }
    }
}

fn print_history_note(plan: &Plan) {
    let n = plan.history();
    if n > 0 {
        println!("{n} invalidation(s) only on the gateway are kept: invalidations are history, never pruned");
    }
}

/// What `diff` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffOutcome {
    /// The gateway holds what the files say.
    Same,
    /// `apply` (with `--prune` for `-` lines) would change something.
    Differs,
    /// Some files cannot be applied as they are (`!` lines).
    Refused,
}

/// `shardgate diff -f DIR`.
pub async fn diff(client: &mut AdminClient, dir: &Path) -> anyhow::Result<DiffOutcome> {
    let plan = load_plan(client, dir).await?;
    print_plan(&plan);
    println!(
        "{} to create, {} to update, {} unchanged, {} only live",
        plan.creates(),
        plan.updates(),
        plan.unchanged(),
        plan.only_live()
    );
    if plan.only_live() > 0 {
        println!("resources marked - exist only on the gateway; `shardgate apply --prune` deletes them");
    }
    print_history_note(&plan);
    Ok(if plan.refused() > 0 {
        DiffOutcome::Refused
    } else if plan.creates() + plan.updates() + plan.only_live() > 0 {
        DiffOutcome::Differs
    } else {
        DiffOutcome::Same
    })
}

/// The order writes (or deletes) run in: a resource after every resource
/// it refers to among `items` (before them, for deletes), kind order then
/// id order otherwise. A cycle is broken in kind order (the Admin API then
/// says what it refuses).
fn ordered(items: Vec<&Entry>, deletes: bool) -> Vec<&Entry> {
    let n = items.len();
    let rank = |kind: ResourceKind| ResourceKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    let key = |i: usize| {
        let r = rank(items[i].kind);
        (if deletes { usize::MAX - r } else { r }, items[i].id.clone(), i)
    };
    let index: HashMap<(ResourceKind, &ResourceId), usize> =
        items.iter().enumerate().map(|(i, e)| ((e.kind, &e.id), i)).collect();
    let mut waiting = vec![0usize; n];
    let mut unlocks: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, e) in items.iter().enumerate() {
        for (kind, id) in &e.refs {
            if let Some(&j) = index.get(&(*kind, id))
                && j != i
            {
                let (first, then) = if deletes { (i, j) } else { (j, i) };
                waiting[then] += 1;
                unlocks[first].push(then);
            }
        }
    }
    let mut ready: BTreeSet<_> = (0..n).filter(|i| waiting[*i] == 0).map(key).collect();
    let mut done = vec![false; n];
    let mut out = Vec::with_capacity(n);
    loop {
        while let Some((_, _, i)) = ready.pop_first() {
            done[i] = true;
            out.push(items[i]);
            for &t in &unlocks[i] {
                waiting[t] = waiting[t].saturating_sub(1);
                if waiting[t] == 0 && !done[t] {
                    ready.insert(key(t));
                }
            }
        }
        match (0..n).filter(|i| !done[*i]).min_by_key(|i| key(*i)) {
            Some(i) => {
                waiting[i] = 0;
                ready.insert(key(i));
            }
            None => break,
        }
    }
    out
}

/// Progress on stderr: a line redrawn in place on a terminal, a plain line
/// every [`PROGRESS_EVERY`] changes otherwise.
struct Progress {
    total: usize,
    done: usize,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress { total, done: 0, tty: std::io::stderr().is_terminal() }
    }

    /// Prints a line of the report on stdout, keeping the progress line below it.
    fn say(&self, line: &str) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
        println!("{line}");
        self.draw();
    }

    fn draw(&self) {
        if self.tty && self.total > 0 {
            eprint!("\rapplying {}/{}", self.done, self.total);
        }
    }

    fn step(&mut self) {
        self.done += 1;
        if self.tty {
            self.draw();
        } else if self.done.is_multiple_of(PROGRESS_EVERY) {
            eprintln!("applying {}/{}", self.done, self.total);
        }
    }

    fn finish(&self) {
        if self.tty && self.total > 0 {
            eprint!("\r\x1b[K");
        }
    }
}

/// `shardgate apply -f DIR [--prune] [--dry-run]`.
pub async fn apply(client: &mut AdminClient, dir: &Path, prune: bool, dry_run: bool) -> anyhow::Result<()> {
    let plan = load_plan(client, dir).await?;
    if plan.refused() > 0 {
        print_plan(&plan);
        bail!("{} file(s) cannot be applied (lines marked !); nothing was applied", plan.refused());
    }
    let writes =
        ordered(plan.entries.iter().filter(|e| matches!(e.step, Step::Create | Step::Update(_))).collect(), false);
    let deletes: Vec<&Entry> = if prune {
        ordered(plan.entries.iter().filter(|e| e.step == Step::OnlyLive).collect(), true)
    } else {
        Vec::new()
    };
    let kept = if prune { 0 } else { plan.only_live() };
    if dry_run {
        for e in writes.iter().chain(&deletes) {
            match &e.step {
                Step::Create => println!("+ {}", e.name()),
                Step::Update(fields) => println!("~ {}: {}", e.name(), fields.join(", ")),
                _ => println!("- {}", e.name()),
            }
        }
        println!(
            "dry run, nothing changed: would create {}, update {}, delete {}; {} unchanged",
            plan.creates(),
            plan.updates(),
            deletes.len(),
            plan.unchanged()
        );
        print_kept(kept);
        print_history_note(&plan);
        return Ok(());
    }
    let mut progress = Progress::new(writes.len() + deletes.len());
    let (mut created, mut updated, mut deleted) = (0, 0, 0);
    let stopped = |e: &Entry, err: &dyn std::fmt::Display, created, updated, deleted| {
        eprintln!("shardgate: apply stopped at {}: {err}", e.named());
        anyhow::anyhow!(
            "apply stopped at its first error; applied before it: created {created}, updated {updated}, deleted {deleted}"
        )
    };
    for e in &plan.entries {
        if let Step::Unchanged(Some(note)) = &e.step {
            progress.say(&format!("unchanged {} ({note})", e.name()));
        }
    }
    for e in writes {
        if let Err(err) = client.put(e.kind, &e.id, &e.body).await {
            progress.finish();
            return Err(stopped(e, &err, created, updated, deleted));
        }
        progress.step();
        match &e.step {
            Step::Update(fields) => {
                updated += 1;
                progress.say(&format!("updated {} ({})", e.name(), fields.join(", ")));
            }
            _ => {
                created += 1;
                progress.say(&format!("created {}", e.name()));
            }
        }
    }
    for e in deletes {
        if let Err(err) = client.delete(e.kind, &e.id).await {
            progress.finish();
            return Err(stopped(e, &err, created, updated, deleted));
        }
        progress.step();
        deleted += 1;
        progress.say(&format!("deleted {}", e.name()));
    }
    progress.finish();
    println!("created {created}, updated {updated}, deleted {deleted}, unchanged {}", plan.unchanged());
    print_kept(kept);
    print_history_note(&plan);
    Ok(())
}

fn print_kept(kept: usize) {
    if kept > 0 {
        println!("{kept} resource(s) only on the gateway kept; `--prune` deletes them");
    }
}

/// `shardgate export -o DIR [--include-secrets] [--force]`.
pub async fn export(client: &mut AdminClient, dir: &Path, secrets: bool, force: bool) -> anyhow::Result<()> {
    // Everything is read before anything is written: a failed read changes no file.
    let live = fetch_live(client, secrets).await?;
    let mut resources = Vec::new();
    for (kind, by_id) in live {
        let list = by_id
            .into_iter()
            .map(|(id, value)| {
                let value = canonical(kind, &value).map_or(value, |c| c.0);
                (id, value)
            })
            .collect::<Vec<_>>();
        resources.push((kind, list));
    }
    let written = files::write_export(dir, force, &resources).map_err(anyhow::Error::msg)?;
    for path in &written.removed {
        println!("removed {} (no longer on the gateway)", path.display());
    }
    let counts: Vec<String> =
        resources.iter().filter(|(_, l)| !l.is_empty()).map(|(k, l)| format!("{} {k}", l.len())).collect();
    println!(
        "exported {} resource(s) to {}{}",
        written.files,
        dir.display(),
        if counts.is_empty() { String::new() } else { format!(": {}", counts.join(", ")) }
    );
    let ssls = resources.iter().find(|(k, _)| *k == ResourceKind::Ssls).map_or(0, |(_, l)| l.len());
    if !secrets && ssls > 0 {
        println!(
            "the {ssls} ssl file(s) hold no private key (--include-secrets exports them); applying them keeps the stored keys of unchanged certificates"
        );
    }
    Ok(())
}

/// The key for the Admin API, or what to do without one.
pub fn admin_key(key: Option<String>) -> anyhow::Result<String> {
    key.filter(|k| !k.is_empty())
        .context("no admin key: set SHARDGATE_ADMIN_KEY (or pass --admin-key, which other users of this machine can see in the process list)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).expect("id")
    }

    fn entry(kind: ResourceKind, i: &str, refs: &[(ResourceKind, &str)]) -> Entry {
        Entry {
            kind,
            id: id(i),
            step: Step::Create,
            path: None,
            body: Value::Null,
            refs: refs.iter().map(|(k, r)| (*k, id(r))).collect(),
        }
    }

    /// Writes come after what they refer to, whatever the kind order says
    /// (a staging distribution, then its policy, then the primary that
    /// names the policy); deletes run the other way round.
    #[test]
    fn referenced_resources_are_written_first_and_deleted_last() {
        use ResourceKind::*;
        let items = [
            entry(Distributions, "assets", &[(CdPolicies, "canary"), (CachePolicies, "vendor")]),
            entry(Distributions, "assets-staging", &[]),
            entry(CdPolicies, "canary", &[(Distributions, "assets-staging")]),
            entry(CachePolicies, "vendor", &[]),
            entry(StreamRoutes, "r1", &[(Upstreams, "u"), (WebAcls, "acl")]),
            entry(WebAcls, "acl", &[(IpSets, "ips")]),
            entry(IpSets, "ips", &[]),
            entry(Upstreams, "u", &[]),
            entry(Upstreams, "unused", &[(Upstreams, "unused")]),
        ];
        let names = |v: Vec<&Entry>| v.iter().map(|e| e.name()).collect::<Vec<_>>();
        let writes = names(ordered(items.iter().collect(), false));
        let pos = |n: &str| writes.iter().position(|w| w == n).unwrap_or_else(|| panic!("{n} missing: {writes:?}"));
        assert_eq!(writes.len(), items.len());
        for (before, after) in [
            ("upstreams/u", "stream_routes/r1"),
            ("ip_sets/ips", "web_acls/acl"),
            ("web_acls/acl", "stream_routes/r1"),
            ("distributions/assets-staging", "continuous_deployment_policies/canary"),
            ("continuous_deployment_policies/canary", "distributions/assets"),
            ("cache_policies/vendor", "distributions/assets"),
        ] {
            assert!(pos(before) < pos(after), "{before} before {after}: {writes:?}");
        }
        assert_eq!(writes[0], "upstreams/u", "kind order where nothing else decides");
        let deletes = names(ordered(items.iter().collect(), true));
        let pos = |n: &str| deletes.iter().position(|w| w == n).unwrap_or(usize::MAX);
        for (before, after) in [
            ("stream_routes/r1", "upstreams/u"),
            ("distributions/assets", "continuous_deployment_policies/canary"),
            ("web_acls/acl", "ip_sets/ips"),
        ] {
            assert!(pos(before) < pos(after), "{before} deleted before {after}: {deletes:?}");
        }
        // A cycle still yields every item.
        let cycle = [entry(Upstreams, "a", &[(Upstreams, "b")]), entry(Upstreams, "b", &[(Upstreams, "a")])];
        assert_eq!(ordered(cycle.iter().collect(), false).len(), 2);
    }

    fn files_of(kind: ResourceKind, list: &[(&str, Value)]) -> files::Files {
        let mut f = files::Files::default();
        let by_id = f.kinds.entry(kind).or_default();
        for (i, v) in list {
            by_id.insert(
                id(i),
                files::FileResource { path: PathBuf::from(format!("{kind}/{i}.yaml")), value: v.clone() },
            );
        }
        f
    }

    fn live_of(kind: ResourceKind, list: &[(&str, Value)]) -> Live {
        ResourceKind::ALL
            .into_iter()
            .map(|k| {
                let by_id =
                    if k == kind { list.iter().map(|(i, v)| (id(i), v.clone())).collect() } else { BTreeMap::new() };
                (k, by_id)
            })
            .collect()
    }

    #[test]
    fn values_are_compared_as_json_field_by_field() {
        let f = files_of(
            ResourceKind::Upstreams,
            &[
                ("same", json!({"id": "same", "nodes": {"127.0.0.1:1": 1}, "type": "roundrobin"})),
                ("changed", json!({"id": "changed", "nodes": {"127.0.0.1:2": 1}, "desc": "new"})),
                ("new", json!({"id": "new", "nodes": {"127.0.0.1:3": 1}})),
            ],
        );
        let live = live_of(
            ResourceKind::Upstreams,
            &[
                ("same", json!({"id": "same", "type": "roundrobin", "nodes": {"127.0.0.1:1": 1}})),
                ("changed", json!({"id": "changed", "nodes": {"127.0.0.1:1": 1}, "desc": "old"})),
                ("gone", json!({"id": "gone", "nodes": {"127.0.0.1:4": 1}})),
            ],
        );
        let p = plan(&f, &live).expect("plan");
        let steps: Vec<(String, Step)> = p.entries.iter().map(|e| (e.name(), e.step.clone())).collect();
        assert_eq!(
            steps,
            [
                ("upstreams/changed".into(), Step::Update(vec!["desc".into(), "nodes".into()])),
                ("upstreams/gone".into(), Step::OnlyLive),
                ("upstreams/new".into(), Step::Create),
                ("upstreams/same".into(), Step::Unchanged(None)),
            ]
        );
        let bad = files_of(ResourceKind::Upstreams, &[("x", json!({"id": "x", "nodez": {}}))]);
        let errors = plan(&bad, &live).expect_err("unknown field");
        assert!(errors[0].starts_with("upstreams/x.yaml: invalid upstream:"), "{errors:?}");
    }

    /// SSL files without a key leave the stored key alone when the rest is
    /// equal, and are refused when it is not (or when there is nothing to
    /// keep); keys are never compared. An existing invalidation is never
    /// rewritten and one only on the gateway is never pruned.
    #[test]
    fn ssl_files_without_keys_and_invalidations_follow_their_rules() {
        let ssl = |cert: &str, key: Option<&str>| {
            let mut v = json!({"cert": cert, "snis": ["a.example"]});
            if let Some(k) = key {
                v["key"] = json!(k);
            }
            v
        };
        let f = files_of(
            ResourceKind::Ssls,
            &[
                ("equal", ssl("C1", None)),
                ("changed", ssl("C2", None)),
                ("missing", ssl("C3", None)),
                ("rekeyed", ssl("C4", Some("another encoding of the key"))),
                ("rotated", ssl("C5-new", Some("K5-new"))),
            ],
        );
        let live = live_of(
            ResourceKind::Ssls,
            &[
                ("equal", ssl("C1", None)),
                ("changed", ssl("C2-old", None)),
                ("rekeyed", ssl("C4", None)),
                ("rotated", ssl("C5", None)),
            ],
        );
        let p = plan(&f, &live).expect("plan");
        let step = |n: &str| p.entries.iter().find(|e| e.id.as_str() == n).map(|e| e.step.clone()).expect(n);
        assert_eq!(step("equal"), Step::Unchanged(Some("no key in file")));
        assert!(matches!(step("changed"), Step::Refused(m) if m.contains("cert") && m.contains("needs its key")));
        assert!(matches!(step("missing"), Step::Refused(m) if m.contains("created with its key")));
        assert_eq!(step("rekeyed"), Step::Unchanged(None), "an unchanged certificate has an unchanged key pair");
        assert_eq!(step("rotated"), Step::Update(vec!["cert".into()]));

        let inv = |path: &str| json!({"distribution_id": "d", "paths": [path]});
        let f = files_of(ResourceKind::Invalidations, &[("i1", inv("/a")), ("i2", inv("/b"))]);
        let live = live_of(ResourceKind::Invalidations, &[("i1", inv("/changed")), ("old", inv("/c"))]);
        let p = plan(&f, &live).expect("plan");
        let steps: Vec<Step> = p.entries.iter().map(|e| e.step.clone()).collect();
        assert_eq!(
            steps,
            [
                Step::Unchanged(Some("invalidations cannot change once created; the stored one is kept")),
                Step::Create,
                Step::History,
            ]
        );
    }
}
