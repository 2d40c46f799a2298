//! Country lookup for `GeoMatchStatement`, from a database in MaxMind's
//! format (GeoLite2-Country, or the CC0 `ip-location-db` country databases).
//! Loaded once at start from the path in the bootstrap file; lookups are
//! memory reads with no I/O.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

/// A country database.
pub struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb").field("type", &self.reader.metadata().database_type).finish()
    }
}

#[derive(Deserialize)]
struct Record<'a> {
    /// `ip-location-db` layout.
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    /// GeoLite2 layout.
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

impl GeoDb {
    /// Opens a database file.
    pub fn open(path: &Path) -> Result<Self, String> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(GeoDb { reader })
    }

    /// The ISO 3166-1 alpha-2 code of `ip`'s country, upper-case.
    pub fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let ip = ip.to_canonical();
        let found = self.reader.lookup(ip).ok()?;
        let record: Record<'_> = found.decode().ok()??;
        let code = record.country_code.or(record.country.and_then(|c| c.iso_code))?.as_bytes();
        match code {
            [a, b] => Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()]),
            _ => None,
        }
    }
}
