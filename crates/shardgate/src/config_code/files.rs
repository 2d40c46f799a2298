//! The directory of resource files that `export` writes and `diff` and
//! `apply` read: `DIR/<kind plural>/<id>.yaml` (or `.yml`, `.json`), one
//! resource per file, its JSON value without the server's timestamps.
//!
//! Reading is strict, so that `apply --prune` never deletes a resource
//! because its file was silently skipped: a directory that is not a kind,
//! a file that is not a resource file, a file whose `id` disagrees with its
//! name, two files for one id, unparsable content or a value the model
//! refuses: each is an error naming the file. Only hidden entries (a name
//! starting with `.`, such as `.git` or `.gitkeep`) that are not resource
//! files, and plain files at the top of DIR (a README), are passed over.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use shardgate_model::{ResourceId, ResourceKind, json as mjson};

/// Largest resource file read, in bytes (far above the store's value limit,
/// so only a file that is not a resource hits it).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The extension `export` writes.
pub const EXPORT_EXTENSION: &str = "yaml";
/// Extensions of resource files.
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// One resource read from a file.
#[derive(Debug, Clone)]
pub struct FileResource {
    /// The file, for messages.
    pub path: PathBuf,
    /// The value as written in the file, server-owned fields removed and the
    /// id (from the file name) set.
    pub value: Value,
}

/// Every resource in a directory, by kind and id.
#[derive(Debug, Default)]
pub struct Files {
    /// Kind → id → resource.
    pub kinds: BTreeMap<ResourceKind, BTreeMap<ResourceId, FileResource>>,
}

impl Files {
    /// The resources of `kind` (none if its directory is absent).
    pub fn of(&self, kind: ResourceKind) -> Option<&BTreeMap<ResourceId, FileResource>> {
        self.kinds.get(&kind)
    }

    /// How many resources in all.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.kinds.values().map(BTreeMap::len).sum()
    }
}

/// `(id, extension)` if `name` is a resource file's name.
fn resource_name(name: &str) -> Option<(&str, &str)> {
    let (stem, ext) = name.rsplit_once('.')?;
    EXTENSIONS.contains(&ext).then_some((stem, ext))
}

/// Reads every resource file under `dir`. Every problem found is returned,
/// each naming its file.
pub fn read_dir(dir: &Path) -> Result<Files, Vec<String>> {
    let mut files = Files::default();
    let mut errors = Vec::new();
    let entries = match sorted_entries(dir) {
        Ok(e) => e,
        Err(e) => return Err(vec![e]),
    };
    for (name, path, is_dir) in entries {
        if !is_dir {
            // A README or a CI file beside the kind directories.
            continue;
        }
        let Some(kind) = ResourceKind::from_plural(&name) else {
            if !name.starts_with('.') {
                errors.push(format!(
                    "{}: not a resource kind directory (kinds: {})",
                    path.display(),
                    ResourceKind::ALL.map(ResourceKind::plural).join(", ")
                ));
            }
            continue;
        };
        let by_id = files.kinds.entry(kind).or_default();
        let entries = match sorted_entries(&path) {
            Ok(e) => e,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for (name, path, is_dir) in entries {
            let Some((stem, ext)) = resource_name(&name).filter(|_| !is_dir) else {
                if !name.starts_with('.') {
                    errors.push(format!(
                        "{}: not a resource file (resource files are <id>.yaml, <id>.yml or <id>.json)",
                        path.display()
                    ));
                }
                continue;
            };
            match read_file(kind, stem, ext, &path) {
                Ok((id, r)) => {
                    if let Some(other) = by_id.get(&id) {
                        errors.push(format!(
                            "{}: {} {id} is also in {}; keep one file per resource",
                            path.display(),
                            kind.singular(),
                            other.path.display()
                        ));
                        continue;
                    }
                    by_id.insert(id, r);
                }
                Err(e) => errors.push(format!("{}: {e}", path.display())),
            }
        }
    }
    if errors.is_empty() { Ok(files) } else { Err(errors) }
}

/// The entries of `dir` sorted by name: (name, path, is a directory).
/// A name that is not UTF-8 is an error.
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, String> {
    let read = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(format!("{}: the name is not UTF-8", path.display()));
        };
        // Follows symbolic links, as a checkout may hold them.
        let is_dir = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?.is_dir();
        out.push((name, path, is_dir));
    }
    out.sort();
    Ok(out)
}

/// One resource file: its id from the name, its value parsed as YAML or
/// JSON, the body's `id` (if any) checked against the name.
fn read_file(kind: ResourceKind, stem: &str, ext: &str, path: &Path) -> Result<(ResourceId, FileResource), String> {
    let id = ResourceId::parse(stem).map_err(|e| format!("the file name is not a resource id: {e}"))?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    let value: Value = if ext == "json" {
        mjson::parse(&bytes).map_err(|e| format!("not JSON: {e}"))?
    } else {
        let text = std::str::from_utf8(&bytes).map_err(|_| "not UTF-8".to_string())?;
        serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?
    };
    mjson::check_value_depth(&value).map_err(|e| e.to_string())?;
    let Value::Object(mut obj) = value else {
        return Err(format!("a resource file holds one object (the {}), not {}", kind.singular(), json_type(&value)));
    };
    if let Some(body_id) = obj.get("id") {
        let body_id = ResourceId::from_json("id", body_id).map_err(|e| e.to_string())?;
        if body_id != id {
            return Err(format!(
                "the id in the file ({body_id}) disagrees with the file name ({id}); rename one of them"
            ));
        }
    }
    super::strip_server_owned(kind, &mut obj);
    obj.insert("id".into(), Value::String(id.to_string()));
    Ok((id, FileResource { path: path.to_owned(), value: Value::Object(obj) }))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// What [`write_export`] did.
#[derive(Debug, Default)]
pub struct Written {
    /// Files written.
    pub files: usize,
    /// Stale resource files removed (`--force` only).
    pub removed: Vec<PathBuf>,
}

/// Writes one file per resource under `dir`: `<kind>/<id>.yaml`, each
/// written to a temporary name and renamed, files holding a private key
/// with mode 0600. A `dir` that exists and is not empty is refused unless
/// `force`; with it, the resource files (`.yaml`, `.yml`, `.json`) in the
/// kind directories that this export did not write are removed, and
/// nothing else is touched.
pub fn write_export(
    dir: &Path,
    force: bool,
    resources: &[(ResourceKind, Vec<(ResourceId, Value)>)],
) -> Result<Written, String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !force {
                return Err(format!(
                    "{} is not empty; export into a new directory, or pass --force to rewrite the resource files in it (only <kind>/<id>.yaml|yml|json files are written or removed)",
                    dir.display()
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    let mut written = Written::default();
    for (kind, list) in resources {
        let kind_dir = dir.join(kind.plural());
        std::fs::create_dir_all(&kind_dir).map_err(|e| format!("creating {}: {e}", kind_dir.display()))?;
        let mut names = std::collections::HashSet::new();
        for (id, value) in list {
            let name = format!("{id}.{EXPORT_EXTENSION}");
            let text = serde_yaml_ng::to_string(value).map_err(|e| format!("{kind}/{id}: encoding YAML: {e}"))?;
            let secret = *kind == ResourceKind::Ssls && (value.get("key").is_some() || value.get("keys").is_some());
            write_file(&kind_dir.join(&name), text.as_bytes(), secret)?;
            names.insert(name);
            written.files += 1;
        }
        if force {
            for (name, path, is_dir) in sorted_entries(&kind_dir)? {
                if !is_dir && resource_name(&name).is_some() && !names.contains(&name) {
                    std::fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))?;
                    written.removed.push(path);
                }
            }
        }
    }
    Ok(written)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// file is never left half written; mode 0600 when it holds a secret.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if secret {
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn yaml_and_json_files_are_read_and_checked_against_their_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "README.md", "not a resource");
        write(d, ".git/config", "ignored");
        write(d, "upstreams/.gitkeep", "");
        write(d, "upstreams/u1.yaml", "nodes:\n  127.0.0.1:9000: 1\ntype: roundrobin\ncreate_time: 1\n");
        write(d, "upstreams/u2.json", r#"{"id": "u2", "nodes": {"127.0.0.1:9001": 1}}"#);
        write(d, "stream_routes/1.yaml", "id: 1\nsni: a.example\nupstream_id: u1\n");
        let files = read_dir(d).expect("read");
        assert_eq!(files.len(), 3);
        let u1 = &files.of(ResourceKind::Upstreams).expect("upstreams")[&ResourceId::parse("u1").expect("id")];
        assert_eq!(u1.value, serde_json::json!({"id": "u1", "nodes": {"127.0.0.1:9000": 1}, "type": "roundrobin"}));
        let r = &files.of(ResourceKind::StreamRoutes).expect("routes")[&ResourceId::parse("1").expect("id")];
        assert_eq!(r.value["id"], "1", "an integer id is the file name's string");

        write(d, "stream_routes/2.yaml", "id: 3\nsni: b.example\n");
        write(d, "routes/x.yaml", "uri: /\n");
        write(d, "upstreams/u1.json", "{}");
        write(d, "upstreams/notes.txt", "");
        write(d, "upstreams/bad id.yaml", "nodes: {}\n");
        write(d, "ssls/list.yaml", "- a\n- b\n");
        write(d, "ip_sets/broken.json", "{");
        let errors = read_dir(d).expect_err("refused");
        let all = errors.join("\n");
        for needle in [
            "stream_routes/2.yaml: the id in the file (3) disagrees with the file name (2)",
            "routes: not a resource kind directory",
            "upstreams/u1.yaml: upstream u1 is also in",
            "upstreams/notes.txt: not a resource file",
            "upstreams/bad id.yaml: the file name is not a resource id",
            "ssls/list.yaml: a resource file holds one object",
            "ip_sets/broken.json: not JSON",
        ] {
            assert!(all.contains(needle), "{needle:?} missing in:\n{all}");
        }
        assert_eq!(errors.len(), 7, "{all}");
    }

    /// What export writes, apply reads back as the same JSON value: strings
    /// that look like other YAML types, multi-line PEM, numbers at the edges.
    #[test]
    fn values_survive_the_trip_through_yaml() {
        let tricky = [
            "yes",
            "no",
            "on",
            "off",
            "null",
            "~",
            "true",
            "1",
            "01",
            "1.0",
            "0x10",
            "1e3",
            ".inf",
            "",
            " lead",
            "trail ",
            "a: b",
            "#c",
            "- x",
            "[x]",
            "{x}",
            "'q'",
            "\"dq\"",
            "multi\nline\n",
            "tab\there",
            "✓ ünïcode",
            "\u{1}ctl",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ];
        let value = serde_json::json!({
            "strings": tricky,
            "keys": tricky.iter().map(|s| (s.to_string(), serde_json::json!(1))).collect::<serde_json::Map<_, _>>(),
            "numbers": [0, -1, u64::MAX, i64::MIN, 0.05, 1e300, -2.5e-10],
            "nested": {"a": [{"b": null, "c": true}], "empty": {}, "none": []},
        });
        let text = serde_yaml_ng::to_string(&value).expect("to yaml");
        let back: Value = serde_yaml_ng::from_str(&text).expect("from yaml");
        assert_eq!(back, value, "{text}");
    }

    #[test]
    fn export_refuses_a_non_empty_directory_and_with_force_removes_only_stale_resource_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("out");
        let u =
            |id: &str| (ResourceId::parse(id).expect("id"), serde_json::json!({"id": id, "nodes": {"127.0.0.1:1": 1}}));
        let key = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n";
        let ssl = (ResourceId::parse("s").expect("id"), serde_json::json!({"id": "s", "cert": "c", "key": key}));
        let first = [(ResourceKind::Upstreams, vec![u("a"), u("b")]), (ResourceKind::Ssls, vec![ssl])];
        assert_eq!(write_export(&d, false, &first).expect("new dir").files, 3);
        let mode = std::fs::metadata(d.join("ssls/s.yaml")).expect("ssl file").permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "a file with a key is private");
        let text = std::fs::read_to_string(d.join("ssls/s.yaml")).expect("read");
        let back: Value = serde_yaml_ng::from_str(&text).expect("yaml");
        assert_eq!(back["key"], key, "multi-line PEM survives YAML");

        let e = write_export(&d, false, &first).expect_err("not empty");
        assert!(e.contains("is not empty") && e.contains("--force"), "{e}");
        write(&d, "upstreams/old.json", "{}");
        write(&d, "upstreams/.gitkeep", "");
        write(&d, "README.md", "kept");
        let second = [(ResourceKind::Upstreams, vec![u("a")]), (ResourceKind::Ssls, vec![])];
        let w = write_export(&d, true, &second).expect("forced");
        let mut removed: Vec<String> = w.removed.iter().map(|p| p.display().to_string()).collect();
        removed.sort();
        assert_eq!(
            removed,
            [d.join("ssls/s.yaml"), d.join("upstreams/b.yaml"), d.join("upstreams/old.json")]
                .map(|p| p.display().to_string())
        );
        assert!(d.join("upstreams/.gitkeep").exists() && d.join("README.md").exists(), "not resource files: kept");
        assert_eq!(read_dir(&d).expect("read back").len(), 1);
    }
}
