//! `shardgate store check` and `shardgate store repair`: the report of a
//! store file, printed for an operator (the engine is
//! `shardgate_store::repair`).

use std::path::Path;

use shardgate_store::StoreError;
use shardgate_store::log::Op;
use shardgate_store::repair::{self, Report};

/// Prints the report; `Ok(true)` when `run` would open the store.
pub fn check(dir: &Path) -> Result<bool, StoreError> {
    let report = repair::check(dir)?;
    print_report(&report);
    match &report.damage {
        None => println!("ok: shardgate run opens this store"),
        Some(d) => println!(
            "shardgate run refuses this store; `shardgate store repair` keeps a copy and truncates the log at byte {}",
            d.offset
        ),
    }
    Ok(report.opens())
}

/// Repairs and prints what was lost; `Ok(true)` when the store now opens.
pub fn repair(dir: &Path) -> Result<bool, StoreError> {
    let (report, copy) = repair::repair(dir)?;
    print_report(&report);
    match (copy, &report.damage) {
        (Some(copy), Some(d)) => {
            println!("kept a copy of the damaged file: {}", copy.display());
            println!(
                "truncated {} at byte {}: {} good record(s) kept, {} recognisable record(s) after the damage lost (listed above; their values are in the copy)",
                report.path.display(),
                d.offset,
                report.good_records,
                d.lost_count
            );
        }
        _ => println!("nothing to repair: shardgate run opens this store"),
    }
    Ok(true)
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
    println!("damaged at byte {}: {}; {} byte(s) from there to the end", d.offset, d.reason, d.bytes_after);
    if d.lost_count == 0 {
        println!("no intact record is recognisable after the damage");
        return;
    }
    println!("records after the damage, lost by a repair ({}):", d.lost_count);
    for l in &d.lost {
        let op = if l.op == Op::Delete { "delete" } else { "put" };
        println!("  {op} {} (revision {})", l.key, l.revision);
    }
    if d.lost_count > d.lost.len() {
        println!("  ... and {} more", d.lost_count - d.lost.len());
    }
}
