//! Prints the country a database gives each address:
//! `cargo run -p shardgate-waf --example geo_lookup -- <db.mmdb> <ip>...`

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((db, ips)) = args.split_first() else {
        eprintln!("usage: geo_lookup <db.mmdb> <ip>...");
        return std::process::ExitCode::from(2);
    };
    let db = match shardgate_waf::GeoDb::open(std::path::Path::new(db)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for ip in ips {
        let Ok(addr) = ip.parse() else {
            eprintln!("{ip}: not an address");
            continue;
        };
        let cc = db.country(addr).map(|c| String::from_utf8_lossy(&c).into_owned());
        println!("{ip} {}", cc.as_deref().unwrap_or("-"));
    }
    std::process::ExitCode::SUCCESS
}
