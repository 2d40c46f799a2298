//! The embedded store's log reader on arbitrary bytes: `log::scan` (what
//! start-up runs) and `repair::inspect` (what `store check` prints) never
//! panic, and what a scan keeps re-encodes to exactly the bytes it came from,
//! with the torn tail accounting for the rest of the file.
//!
//! An input starting with 0 gets the store's magic in front, so the fuzzer
//! reaches the records quickly.

#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use shardgate_store::log::{self, MAGIC};
use shardgate_store::repair;

fuzz_target!(|data: &[u8]| {
    let bytes = match data.split_first() {
        Some((0, rest)) => [&MAGIC[..], rest].concat(),
        _ => data.to_vec(),
    };
    match log::scan(&bytes) {
        Ok(scan) => {
            assert_eq!(scan.good_len + scan.torn_bytes, bytes.len() as u64, "good prefix and torn tail cover the file");
            if scan.good_len > 0 {
                let mut again = MAGIC.to_vec();
                for r in &scan.records {
                    log::encode(r, &mut again);
                }
                assert_eq!(&again[..], &bytes[..scan.good_len as usize], "kept records re-encode to their bytes");
            }
        }
        Err(e) => assert!(e.offset <= bytes.len() as u64),
    }
    let report = repair::inspect(PathBuf::from("store.log"), &bytes);
    assert!(report.good_len <= report.file_len);
});
