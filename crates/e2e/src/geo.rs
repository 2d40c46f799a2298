//! A country database in MaxMind's DB format, written by the tests for the
//! addresses they use (loopback ones, which public databases place nowhere),
//! so that country lookups on the real client address can be asserted.
//!
//! Format (MaxMind DB File Format Specification 2.0): a binary search tree
//! over the address bits, 24-bit records (a node index; the node count for
//! "no data"; or the node count + 16 + an offset into the data section), 16
//! zero bytes, the data section, then `\xAB\xCD\xEFMaxMind.com` and the
//! metadata map. Only what an IPv4 country database needs is written.

use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Clone, Copy)]
enum Child {
    Empty,
    Node(usize),
    Data(usize),
}

fn control(kind: u8, size: usize, out: &mut Vec<u8>) {
    // Sizes below 29 fit the control byte; tests never write larger ones.
    assert!(size < 29, "value too large for this writer");
    if kind <= 7 {
        out.push(kind << 5 | size as u8);
    } else {
        // Extended type: type 0 in the control byte, then type - 7.
        out.push(size as u8);
        out.push(kind - 7);
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    control(2, s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

fn uint(kind: u8, v: u64, out: &mut Vec<u8>) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(kind, 8 - skip, out);
    out.extend_from_slice(&bytes[skip..]);
}

/// Writes a database at `path` where each `(network, prefix, country)`
/// entry maps that IPv4 network to `{"country_code": country}` (the layout
/// of the `ip-location-db` country databases).
pub fn write_country_db(path: &Path, entries: &[(Ipv4Addr, u8, &str)]) -> std::io::Result<()> {
    // The tree: node 0 is the root; children by address bit, MSB first.
    let mut nodes: Vec<[Child; 2]> = vec![[Child::Empty; 2]];
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for (k, (net, prefix, country)) in entries.iter().enumerate() {
        offsets.push(data.len());
        control(7, 1, &mut data);
        string("country_code", &mut data);
        string(country, &mut data);
        let bits = u32::from(*net);
        let mut node = 0;
        for depth in 0..*prefix {
            let b = (bits >> (31 - depth) & 1) as usize;
            if depth + 1 == *prefix {
                nodes[node][b] = Child::Data(k);
            } else {
                node = match nodes[node][b] {
                    Child::Node(n) => n,
                    _ => {
                        nodes.push([Child::Empty; 2]);
                        nodes[node][b] = Child::Node(nodes.len() - 1);
                        nodes.len() - 1
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for n in &nodes {
        for child in n {
            let record = match child {
                Child::Empty => count,
                Child::Node(i) => *i,
                Child::Data(k) => count + 16 + offsets[*k],
            };
            out.extend_from_slice(&(record as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    control(7, 9, &mut out);
    string("binary_format_major_version", &mut out);
    uint(5, 2, &mut out);
    string("binary_format_minor_version", &mut out);
    uint(5, 0, &mut out);
    string("build_epoch", &mut out);
    uint(9, 1_700_000_000, &mut out);
    string("database_type", &mut out);
    string("shardgate-test-country", &mut out);
    string("description", &mut out);
    control(7, 0, &mut out);
    string("ip_version", &mut out);
    uint(5, 4, &mut out);
    string("languages", &mut out);
    control(11, 0, &mut out);
    string("node_count", &mut out);
    uint(6, count as u64, &mut out);
    string("record_size", &mut out);
    uint(5, 24, &mut out);
    std::fs::write(path, out)
}
