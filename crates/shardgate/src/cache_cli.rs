//! `shardgate cache warm`: fills a distribution's cache ahead of a release.
//!
//! Reads the paths from a file (one per line; blank lines and `#` comments
//! skipped; `-` is standard input), starts a warm job on the running
//! gateway through its Admin API (`POST /apisix/admin/distributions/<id>/warm`,
//! see `shardgate_admin::api::warm`), follows its progress
//! (`GET .../warm/<job>`) with a progress bar on a terminal (done/total,
//! rate, ETA) or a line every few seconds otherwise, both on stderr, and
//! prints the summary on stdout: fetched, already fresh, failed with the
//! first reasons. Ctrl-C cancels the job (`DELETE .../warm/<job>`).
//!
//! Exit status: 0 every path is in the cache; 1 nothing was warmed (a bad
//! file, a refused request, no gateway); 2 the job ran but some paths
//! failed, or it was cancelled.
//!
//! The Admin API is found and spoken to as `export`/`apply` do it
//! ([`AdminClient`]: `--admin-url`, `SHARDGATE_ADMIN_KEY`, one kept-alive
//! connection; each request bounded by `--timeout`).

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use shardgate_admin::api::warm::MAX_WARM_PATHS;

use crate::admin_client::AdminClient;

/// Time between two progress reads.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Time between two progress lines when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// Failed progress reads in a row before giving up on following the job.
const MAX_POLL_FAILURES: usize = 20;
/// Failures printed in the summary.
const FAILURES_SHOWN: usize = 20;
/// Width of the progress bar, in characters.
const BAR_WIDTH: usize = 30;
/// Longest path the server takes (in characters): an invalidation path's
/// limit, which the Admin API's warm endpoint applies to each path.
const MAX_PATH_CHARS: usize = 4000;
/// Longest line of the paths file read (bytes, so a line is never read
/// whole into memory before it is refused): room for a path of
/// [`MAX_PATH_CHARS`] multi-byte characters, blanks around it and `\r\n`.
const MAX_LINE_BYTES: usize = 4 * MAX_PATH_CHARS + 256;

/// `--variant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// The distribution itself (the primary side of a canary).
    Primary,
    /// The staging distribution of its continuous deployment policy.
    Staging,
}

impl Variant {
    fn as_str(self) -> &'static str {
        match self {
            Variant::Primary => "primary",
            Variant::Staging => "staging",
        }
    }
}

/// What `cache warm` was asked.
#[derive(Debug)]
pub struct WarmArgs<'a> {
    /// The distribution's id.
    pub distribution: &'a str,
    /// The paths file, `-` for standard input.
    pub paths_from: &'a Path,
    /// The side to warm.
    pub variant: Variant,
    /// Fetches at once.
    pub concurrency: u32,
}

/// The paths of `reader`, each with its line number: lines trimmed, blank
/// lines and `#` comments skipped.
fn read_paths(mut reader: impl BufRead, name: &str) -> anyhow::Result<Vec<(String, usize)>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for i in 0.. {
        buf.clear();
        let limit = (MAX_LINE_BYTES + 1) as u64;
        let n = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {name} (line {})", i + 1))?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_LINE_BYTES {
            bail!("{name} line {}: longer than {MAX_LINE_BYTES} bytes", i + 1);
        }
        let line = std::str::from_utf8(&buf).with_context(|| format!("reading {name} (line {}): not UTF-8", i + 1))?;
        let path = line.trim();
        if path.is_empty() || path.starts_with('#') {
            continue;
        }
        if path.chars().count() > MAX_PATH_CHARS {
            bail!("{name} line {}: a path is at most {MAX_PATH_CHARS} characters", i + 1);
        }
        if out.len() == MAX_WARM_PATHS {
            bail!("{name} lists more than {MAX_WARM_PATHS} paths, the most one job takes: split it into several files");
        }
        out.push((path.to_owned(), i + 1));
    }
    if out.is_empty() {
        bail!("{name} lists no paths (one per line, like /patches/1.2/base.pak)");
    }
    Ok(out)
}

/// `error_msg` with `paths[i]` followed by where it is in the file.
fn with_line(msg: String, paths: &[(String, usize)], file: &str) -> String {
    let Some(start) = msg.find("\"paths[") else { return msg };
    let rest = &msg[start + 7..];
    let Some(i) = rest.split(']').next().and_then(|n| n.parse::<usize>().ok()) else { return msg };
    // The API numbers the distinct paths; duplicates were not sent.
    match paths.get(i) {
        Some((_, line)) => format!("{msg} ({file} line {line})"),
        None => msg,
    }
}

fn count(v: &Value, field: &str) -> u64 {
    v.get(field).and_then(Value::as_u64).unwrap_or(0)
}

/// `1h02m`, `3m05s`, `42s`.
fn duration_text(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// The progress of `job`: a bar for a terminal, or a plain line.
fn progress_text(job: &Value, bar: bool) -> String {
    let (done, total) = (count(job, "done"), count(job, "total").max(1));
    let rate = job.get("rate").and_then(Value::as_f64).unwrap_or(0.0);
    let eta = if rate > 0.0 { duration_text((total - done.min(total)) as f64 / rate) } else { "?".into() };
    let tally =
        format!("fetched {}, fresh {}, failed {}", count(job, "fetched"), count(job, "fresh"), count(job, "failed"));
    if bar {
        let filled = (done.min(total) as usize * BAR_WIDTH) / total as usize;
        format!(
            "[{}{}] {done}/{total} {:>3}%  {rate:.1}/s  ETA {eta}  ({tally})",
            "#".repeat(filled),
            ".".repeat(BAR_WIDTH - filled),
            done * 100 / total
        )
    } else {
        format!("warm: {done}/{total} done ({tally}), {rate:.1}/s, ETA {eta}")
    }
}

/// The summary of a job that ended.
fn summary(job: &Value) -> String {
    let mut out = format!(
        "distribution {} ({}): {} paths in {} ({:.1}/s), {}\n",
        job.get("distribution").and_then(Value::as_str).unwrap_or("?"),
        job.get("variant").and_then(Value::as_str).unwrap_or("?"),
        count(job, "total"),
        duration_text(job.get("elapsed_secs").and_then(Value::as_f64).unwrap_or(0.0)),
        job.get("rate").and_then(Value::as_f64).unwrap_or(0.0),
        job.get("state").and_then(Value::as_str).unwrap_or("?"),
    );
    out.push_str(&format!("  fetched        {}\n", count(job, "fetched")));
    out.push_str(&format!("  already fresh  {}\n", count(job, "fresh")));
    out.push_str(&format!("  failed         {}\n", count(job, "failed")));
    let not_done = count(job, "total").saturating_sub(count(job, "done"));
    if not_done > 0 {
        out.push_str(&format!("  not done       {not_done}\n"));
    }
    if count(job, "duplicates") > 0 {
        out.push_str(&format!("  ({} duplicate paths fetched once)\n", count(job, "duplicates")));
    }
    let failures = job.get("failures").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if !failures.is_empty() {
        out.push_str("failures:\n");
        for f in failures.iter().take(FAILURES_SHOWN) {
            out.push_str(&format!(
                "  {}  {}\n",
                f.get("path").and_then(Value::as_str).unwrap_or("?"),
                f.get("reason").and_then(Value::as_str).unwrap_or("?")
            ));
        }
        let more = count(job, "failed").saturating_sub(FAILURES_SHOWN.min(failures.len()) as u64);
        if more > 0 {
            out.push_str(&format!("  ... and {more} more\n"));
        }
    }
    out
}

/// Runs `shardgate cache warm`.
pub async fn warm(mut client: AdminClient, args: WarmArgs<'_>) -> anyhow::Result<ExitCode> {
    let file = args.paths_from.display().to_string();
    let paths = if file == "-" {
        read_paths(std::io::stdin().lock(), "standard input")?
    } else {
        let f = std::fs::File::open(args.paths_from).with_context(|| format!("--paths-from {file}"))?;
        read_paths(std::io::BufReader::new(f), &file)?
    };
    // The API numbers distinct paths: keep the first line of each.
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<(String, usize)> = paths.iter().filter(|(p, _)| seen.insert(p.clone())).cloned().collect();
    let dist = percent_encoding::utf8_percent_encode(args.distribution, percent_encoding::NON_ALPHANUMERIC).to_string();
    let jobs = format!("/apisix/admin/distributions/{dist}/warm");
    let body = json!({
        "paths": paths.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        "variant": args.variant.as_str(),
        "concurrency": args.concurrency,
    });
    let job = match client.call(Method::POST, &jobs, Some(&body)).await {
        Ok((StatusCode::ACCEPTED, job)) => job,
        Ok((status, _)) => bail!("POST {}: {} instead of 202 with a job", client.url(&jobs), status.as_u16()),
        Err(mut e) => {
            e.message = with_line(e.message, &distinct, &file);
            return Err(e.into());
        }
    };
    let id = job.get("id").and_then(Value::as_str).context("the Admin API's answer has no job id")?.to_owned();
    let job_path = format!("{jobs}/{id}");
    let tty = std::io::stderr().is_terminal();
    eprintln!(
        "warming {} paths of distribution {} ({}), {} at once: job {id}",
        count(&job, "total"),
        args.distribution,
        args.variant.as_str(),
        args.concurrency
    );

    let mut last = job;
    let mut last_line = Instant::now();
    let mut failures_in_a_row = 0;
    let mut cancelled = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let state = last.get("state").and_then(Value::as_str).unwrap_or("running");
        if !matches!(state, "running" | "cancelling") {
            break;
        }
        if tty {
            eprint!("\r\x1b[2K{}", progress_text(&last, true));
            // A progress bar that does not show is only cosmetic.
            if std::io::stderr().flush().is_err() {
                tracing::debug!("stderr flush failed");
            }
        } else if last_line.elapsed() >= LINE_EVERY {
            eprintln!("{}", progress_text(&last, false));
            last_line = Instant::now();
        }
        tokio::select! {
            () = tokio::time::sleep(POLL_EVERY) => {}
            signal = &mut ctrl_c, if !cancelled => {
                if let Err(e) = signal {
                    bail!("cannot watch for Ctrl-C: {e}");
                }
                cancelled = true;
                if tty {
                    eprintln!();
                }
                eprintln!("cancelling job {id} (the fetches in flight finish first)");
                client.call(Method::DELETE, &job_path, None).await?;
            }
        }
        match client.call(Method::GET, &job_path, None).await {
            Ok((_, v)) => {
                last = v;
                failures_in_a_row = 0;
            }
            Err(e) if e.status == Some(StatusCode::NOT_FOUND) => bail!("{e} (did the gateway restart?)"),
            // The Admin API answered, and refused: following it further changes nothing.
            Err(e) if e.status.is_some() => return Err(e.into()),
            Err(e) => {
                failures_in_a_row += 1;
                if failures_in_a_row >= MAX_POLL_FAILURES {
                    let url = client.url(&job_path);
                    return Err(anyhow::Error::new(e).context(format!(
                        "lost the Admin API {MAX_POLL_FAILURES} times in a row; the job may still run: GET {url}"
                    )));
                }
            }
        }
    }
    if tty {
        eprintln!("\r\x1b[2K{}", progress_text(&last, true));
    }
    print!("{}", summary(&last));
    let complete = last.get("state").and_then(Value::as_str) == Some("finished");
    Ok(if complete && count(&last, "failed") == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_files_skip_comments_and_blank_lines() {
        let text = "# release 1.2\n/a.pak\n\n  /b.pak  \n#/c.pak\n/a.pak\n";
        let paths = read_paths(text.as_bytes(), "f").expect("paths");
        assert_eq!(paths, [("/a.pak".to_owned(), 2), ("/b.pak".to_owned(), 4), ("/a.pak".to_owned(), 6)]);
        let e = read_paths("# nothing\n\n".as_bytes(), "list.txt").expect_err("empty");
        assert!(e.to_string().contains("list.txt lists no paths"), "{e}");
        let many = "/x\n".repeat(MAX_WARM_PATHS + 1);
        let e = read_paths(many.as_bytes(), "big.txt").expect_err("too many");
        assert!(e.to_string().contains("more than 100000 paths"), "{e}");
    }

    #[test]
    fn paths_are_capped_at_the_servers_length() {
        let longest = format!("/{}", "é".repeat(MAX_PATH_CHARS - 1));
        let text = format!("/a\r\n{longest}\r\n");
        let paths = read_paths(text.as_bytes(), "f").expect("the longest path the server takes");
        assert_eq!(paths, [("/a".to_owned(), 1), (longest.clone(), 2)]);
        let e = read_paths(format!("/a\n{longest}x\n").as_bytes(), "f").expect_err("one character more");
        assert!(e.to_string().contains("f line 2: a path is at most 4000 characters"), "{e}");
        let huge = format!("/a\n/{}\n", "b".repeat(10 * MAX_LINE_BYTES));
        let e = read_paths(huge.as_bytes(), "f").expect_err("a huge line");
        assert!(e.to_string().contains("f line 2: longer than"), "{e}");
    }

    #[test]
    fn an_error_about_a_path_names_its_line() {
        let paths = vec![("/a".to_owned(), 3), ("b".to_owned(), 7)];
        let msg = "invalid request body: property \"paths[1]\" validation failed: \"b\" must start with '/'".to_owned();
        assert!(with_line(msg, &paths, "list.txt").ends_with("(list.txt line 7)"));
        assert_eq!(with_line("other".into(), &paths, "f"), "other");
    }

    #[test]
    fn progress_shows_rate_and_eta() {
        let job = json!({"done": 250, "total": 1000, "fetched": 240, "fresh": 5, "failed": 5, "rate": 50.0});
        let bar = progress_text(&job, true);
        assert!(bar.starts_with("[#######......................."), "{bar}");
        assert!(bar.contains("250/1000  25%  50.0/s  ETA 15s"), "{bar}");
        assert_eq!(progress_text(&job, false), "warm: 250/1000 done (fetched 240, fresh 5, failed 5), 50.0/s, ETA 15s");
        assert_eq!(duration_text(3725.0), "1h02m");
        assert_eq!(duration_text(185.0), "3m05s");
    }

    #[test]
    fn the_summary_lists_failures_with_reasons() {
        let job = json!({"distribution": "d", "variant": "primary", "state": "finished", "total": 3, "done": 3,
            "fetched": 1, "fresh": 1, "failed": 1, "elapsed_secs": 0.5, "rate": 6.0,
            "failures": [{"path": "/gone", "reason": "404 Not Found from the origin"}]});
        let s = summary(&job);
        assert!(s.contains("fetched        1\n  already fresh  1\n  failed         1\n"), "{s}");
        assert!(s.contains("  /gone  404 Not Found from the origin\n"), "{s}");
    }
}
