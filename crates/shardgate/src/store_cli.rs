//! `shardgate store check` and `shardgate store repair`: the report of a
//! store file, printed for an operator (the engine is
//! `shardgate_store::repair`).

use std::path::Path;

use shardgate_store::StoreError;
use shardgate_store::log::{Op, ScanErrorKind};
use shardgate_store::repair::{self, Outcome, Report};

/// What to do about a file written by another version (or not a store).
const FOREIGN_ADVICE: &str = "it was written by another shardgate version (or is not a store file): do not repair it; run the shardgate version that wrote it, or restore a backup of the data directory (`shardgate store repair --force` truncates it anyway, keeping a copy, and everything from there on is lost)";

/// Prints the report; `Ok(true)` when `run` would open the store.
pub fn check(dir: &Path) -> Result<bool, StoreError> {
    let report = repair::check(dir)?;
    print_report(&report);
    match &report.damage {
        None => println!("ok: shardgate run opens this store"),
        Some(d) if d.kind == ScanErrorKind::Foreign => {
            println!("shardgate run refuses this store: {FOREIGN_ADVICE}")
        }
        Some(d) => println!(
            "shardgate run refuses this store; `shardgate store repair` keeps a copy and truncates the log at byte {}",
            d.offset
        ),
    }
    Ok(report.opens())
}

/// Repairs and prints what was lost; `Ok(true)` when the store now opens.
pub fn repair(dir: &Path, force: bool) -> Result<bool, StoreError> {
    let (report, outcome) = repair::repair(dir, force)?;
    print_report(&report);
    match (outcome, &report.damage) {
        (Outcome::Truncated { copy }, Some(d)) => {
            println!("kept a copy of the damaged file: {}", copy.display());
            println!(
                "truncated {} at byte {}: {} good record(s) kept, {} recognisable record(s) after the damage lost (listed above; their values are in the copy)",
                report.path.display(),
                d.offset,
                report.good_records,
                d.lost_count
            );
            Ok(true)
        }
        (Outcome::Refused, _) => {
            println!("not repaired, nothing changed: {FOREIGN_ADVICE}");
            Ok(false)
        }
        _ => {
            println!("nothing to repair: shardgate run opens this store");
            Ok(true)
        }
    }
}

fn print_report(r: &Report) {
    println!(
        "store {}: {} bytes, {} good record(s) up to byte {} (revision {}, {} live key(s))",
        r.path.display(),
        r.file_len,
        r.good_records,
        r.good_len,
        r.revision,
        r.live_keys
    );
    if r.torn_bytes > 0 {
        println!("torn tail: {} bytes of a write cut by a crash (unacknowledged; dropped at start)", r.torn_bytes);
    }
    let Some(d) = &r.damage else { return };
    let what = match d.kind {
        ScanErrorKind::Damaged => "damaged",
        ScanErrorKind::Foreign => "unreadable by this version",
    };
    println!("{what} at byte {}: {}; {} byte(s) from there to the end", d.offset, d.reason, d.bytes_after);
    if d.lost_count == 0 {
        println!("no intact record is recognisable after the damage");
        return;
    }
    println!("records after the damage, lost by a repair ({}):", d.lost_count);
    for l in &d.lost {
        let op = if l.op == Op::Delete { "delete" } else { "put" };
        println!("  {op} {} (revision {})", l.key, l.revision);
    }
    let unlisted = d.lost_count.saturating_sub(d.lost.len() + d.unreadable);
    if unlisted > 0 {
        println!("  ... and {unlisted} more");
    }
    if d.unreadable > 0 {
        println!("  and {} record(s) in a format this version cannot read", d.unreadable);
    }
}
