//! SQL-injection and cross-site-scripting detection for `SqliMatch` and
//! `XssMatch`, in pure Rust on the linear-time `regex` crate.
//!
//! AWS does not document its engines (AWS WAF developer guide, "SQL
//! injection attack rule statement" and "Cross-site scripting attack rule
//! statement" name none), and the libinjection
//! binding crates download C sources at build time, so shardgate has its own:
//! a set of patterns for the constructs an injection needs (a quote or
//! number closing a value, then a boolean tautology, a `UNION SELECT`, a
//! stacked statement, a comment that cuts the rest, a time or error
//! function; for XSS an executable tag, an event handler attribute, a
//! `javascript:` URL). `HIGH` sensitivity adds looser patterns that catch
//! more and misfire more. Inputs are inspected after the statement's text
//! transformations; detection itself lowercases and compresses whitespace.
//! Rates against outside corpora are measured by the evaluation command,
//! not asserted here.

use std::sync::OnceLock;

use regex::bytes::RegexSet;

const SQLI_LOW: &[&str] = &[
    // A closed string or number, then a boolean operator and a comparison or tautology.
    r#"['"`)]\s*(or|and|xor|\|\||&&)\s*[('"`]*\s*[\w'"`]+\s*[('"`]*\s*(=|<>|!=|<=>|<|>|like|regexp|rlike|is\b|in\s*\()"#,
    r#"['"`]\s*(or|and|\|\||&&)\s+['"`]?\w+['"`]?\s*(--|#|/\*|;|$)"#,
    r#"\b(or|and)\s+\d+\s*(=|<|>|<>|!=)\s*\d+"#,
    r#"\b(or|and)\s+(true|false)\b"#,
    r#"\b(or|and)\s+['"]\w*['"]\s*=\s*['"]"#,
    // UNION-based.
    r"\bunion\b(\s+|/\*.*?\*/)+(all\s+|distinct\s+)?(\(\s*)?select\b",
    // Stacked statements.
    r";\s*(select|insert|update|delete|drop|alter|create|truncate|exec|execute|declare|shutdown)\b",
    // Comment truncation after a quote, right away or after a short tail.
    r#"['"`]\s*(--|#|/\*)"#,
    r#"['"`][^'"`\n]{0,60}?--\s*$"#,
    // An escaped quote that still closes the value, then a boolean.
    r#"\\['"`]\s*(or|and|\|\||&&)"#,
    // A quote closing the value, then a statement separator or a grouped boolean.
    r#"['"`]\s*;\s*(\w|--|#|$)"#,
    r#"['"`]\s*(or|and|xor)\s*\("#,
    r"\bpg_sleep\b",
    r#"['"`]\s*\)\s*(--|#|;)"#,
    // Time, error and file functions.
    r"\b(sleep|benchmark|pg_sleep|waitfor\s+delay|extractvalue|updatexml|load_file|outfile|dumpfile)\b\s*[('\x22]",
    r"\bwaitfor\s+delay\b",
    r"\b(information_schema|sysobjects|syscolumns|pg_catalog|sqlite_master|mysql\.user)\b",
    r"\bselect\b.{1,100}?\bfrom\b.{1,100}?\bwhere\b",
    r"\b(insert\s+into|delete\s+from|(drop|create|alter|truncate)\s+(table|database)|update\s+\w+\s+set)\b",
    // A boolean comparing a number with a quoted or grouped value (CRS 942210).
    r#"\b(and|or|xor)\s+\d+\s*(=|!=|<>|<=>|<|>)\s*['"`(]"#,
    // A closing parenthesis aliased and selected from (CRS 942362).
    r"\)\s*as\s+\w+\s+from\b",
    // PostgreSQL / MySQL JSON operators on a quoted value (CRS 942550).
    r"'\s*::\s*jsonb?\b",
    r"'\s*(->>?|#>>?|@>|<@|\?\||\?&)\s*'",
    r"\bexec(\s+|\()(master|xp_\w+|sp_\w+)",
    r"\b(char|chr|concat|concat_ws|group_concat|ascii|substring|substr|mid|hex|unhex)\s*\(.{0,40}\)\s*(=|,|\|\||\+)",
    r"\bcase\s+when\b.{1,80}?\bthen\b",
    r"@@(version|datadir|hostname|basedir)",
    r"0x[0-9a-f]{8,}",
];

const SQLI_HIGH: &[&str] = &[
    r#"['"`]\s*(or|and|having|order\s+by|group\s+by|limit)\b"#,
    r"\border\s+by\s+\d+",
    r"\bhaving\b\s+\d",
    r"\b(select|union)\b.{0,60}\b(from|select)\b",
    r"(--|#)\s*$",
    r"/\*!?\d*",
    r"\b(cast|convert)\s*\(",
    r"\bif\s*\(.{1,60},.{1,60},",
    // A SQL function call (CRS 942151/942410 at paranoia 1-2).
    r"\b(abs|ascii|avg|bin|bit_length|cast|ceil|char|char_length|chr|coalesce|concat|concat_ws|conv|convert|count|database|decode|default|encode|exp|extract|floor|greatest|group_concat|hex|ifnull|instr|isnull|json_extract|json_keys|lcase|least|left|length|ln|load_file|locate|log|lower|lpad|ltrim|max|md5|mid|min|mod|month|now|nullif|oct|ord|pi|position|pow|power|quote|rand|repeat|replace|reverse|right|round|rpad|rtrim|sha1|sign|sin|sleep|space|sqrt|strcmp|substr|substring|sum|sysdate|time|trim|ucase|unhex|upper|user|uuid|values|version|xmltype|year)\s*\(",
    r"\|\|\s*\(",
];

const XSS: &[&str] = &[
    r"<\s*(script|iframe|frame|frameset|object|embed|applet|meta|base|link|style|svg|math|form|isindex|template)\b",
    r"<\s*[a-z][a-z0-9:-]*[\s/][^>]*?\bon[a-z]{3,}\s*=",
    r"<\s*(img|image|video|audio|source|input|body|details|marquee|select|textarea|keygen)\b[^>]*?\b(on[a-z]{3,}|src|href|srcset|formaction|background)\s*=",
    r"\b(javascript|vbscript|livescript)\s*:",
    r"data\s*:\s*text/html",
    r"\bon(error|load|click|mouseover|mouseenter|focus|blur|submit|toggle|animationstart|pointerover|begin)\s*=",
    r"\bexpression\s*\(",
    r"\b(document\s*\.\s*(cookie|write|domain|location)|window\s*\.\s*location|\.innerhtml\s*=)",
    r"\b(alert|prompt|confirm|eval)\s*(\(|`)",
    r"<\s*/\s*script\s*>",
    r"\bsrcdoc\s*=",
    r"xlink:href\s*=",
    r"@import\b",
    r"<!\[cdata\[",
    // Script gadgets without a tag (CRS 941370/941390).
    r"\b(atob|btoa|settimeout|setinterval|fromcharcode|execscript)\s*\(",
    r#"\[\s*["'`](cookie|alert|eval|constructor)["'`]\s*\]"#,
    // An event handler attribute after a quote or slash, whatever its name (CRS 941120/941160).
    r#"["'`;/]on[a-z]{3,25}\s*=[^=]"#,
    r#"["'`;/]formaction\s*="#,
    // Script through CSS and old IE imports (CRS 941170/941240).
    r"(-moz-binding|\bbehavior)\s*:",
    r"<\?\s*import\b",
    // JSFuck: code made of []()!+ (CRS 941360).
    r"!\[\]",
    // Namespaced script tags and UTF-7 encoded angle brackets (CRS 941160/941350).
    r"<\s*[a-z0-9]+\s*:\s*script\b",
    r"\+adw-\s*script",
];

fn build(patterns: &[&str]) -> RegexSet {
    // The patterns are constants; a failure is a bug caught by the unit tests.
    RegexSet::new(patterns.iter().map(|p| format!("(?i-u){p}"))).unwrap_or_else(|_| RegexSet::empty())
}

fn sqli_low() -> &'static RegexSet {
    static S: OnceLock<RegexSet> = OnceLock::new();
    S.get_or_init(|| build(SQLI_LOW))
}

fn sqli_high() -> &'static RegexSet {
    static S: OnceLock<RegexSet> = OnceLock::new();
    S.get_or_init(|| build(SQLI_HIGH))
}

fn xss() -> &'static RegexSet {
    static S: OnceLock<RegexSet> = OnceLock::new();
    S.get_or_init(|| build(XSS))
}

/// Collapses whitespace and SQL comments to one space, so that `UNION/**/SELECT`
/// and `UNION   SELECT` look alike.
fn normalize(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b.is_ascii_whitespace() || b == 0 {
            if out.last() != Some(&b' ') {
                out.push(b' ');
            }
            i += 1;
        } else if b == b'/' && input.get(i + 1) == Some(&b'*') && input.get(i + 2) != Some(&b'!') {
            match input[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(p) => i += p + 4,
                None => i = input.len(),
            }
            if out.last() != Some(&b' ') {
                out.push(b' ');
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

/// Whether `hay` contains `needle`, ASCII case-insensitively. Candidates
/// come from `memchr2` on the first byte's two cases.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else { return true };
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), hay)
        .any(|i| hay.get(i..i + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(needle)))
}

/// Whether `input` is too plain for any SQL pattern: only letters, digits,
/// `_` and single `-`, no `0x`, none of the bare keywords that match alone.
/// Every pattern needs punctuation, whitespace, a hex literal or one of
/// those keywords, so skipping the regex scan here changes no verdict; it is
/// the common case (ids, tokens, platform names) and costs one pass.
fn plain_for_sqli(input: &[u8]) -> bool {
    // Digits and dots only (versions, addresses): nothing can match.
    if input.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return true;
    }
    if !input.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')) {
        return false;
    }
    // The bare keywords: four have a `_`, two start with `sys`.
    let keyword = (memchr::memchr(b'_', input).is_some()
        && [&b"information_schema"[..], b"pg_catalog", b"sqlite_master", b"pg_sleep"]
            .iter()
            .any(|k| contains_ci(input, k)))
        || (contains_ci(input, b"sys") && (contains_ci(input, b"sysobjects") || contains_ci(input, b"syscolumns")));
    !keyword && memchr::memmem::find(input, b"--").is_none() && !contains_ci(input, b"0x")
}

/// Whether `input` is too plain for any XSS pattern: none of `< > : ( @ \` [ +`,
/// neither `document` nor `window`, and if it has a `=`, none of the words
/// an `=` pattern needs (an `on…` word, `srcdoc`, `innerhtml`, `formaction`); every
/// pattern needs one of them.
fn plain_for_xss(input: &[u8]) -> bool {
    if input.iter().any(|b| matches!(b, b'<' | b'>' | b':' | b'(' | b'@' | b'`' | b'[' | b'+')) {
        return false;
    }
    if contains_ci(input, b"document") || contains_ci(input, b"window") {
        return false;
    }
    if memchr::memchr(b'=', input).is_none() {
        return true;
    }
    // `\bon…\s*=`: "on" at the start of a word. Normalisation only turns
    // bytes into spaces, so a word start after it is one before it too.
    let on_word = memchr::memchr2_iter(b'o', b'O', input).any(|i| {
        matches!(input.get(i + 1), Some(b'n' | b'N'))
            && (i == 0 || !(input[i - 1].is_ascii_alphanumeric() || input[i - 1] == b'_'))
    });
    !on_word
        && !contains_ci(input, b"srcdoc")
        && !contains_ci(input, b"innerhtml")
        && !contains_ci(input, b"formaction")
}

/// Whether `input` looks like SQL injection; `high` adds looser patterns.
pub fn is_sqli(input: &[u8], high: bool) -> bool {
    if plain_for_sqli(input) {
        return false;
    }
    let n = normalize(input);
    sqli_low().is_match(&n) || (high && sqli_high().is_match(&n))
}

/// Whether `input` looks like cross-site scripting.
pub fn is_xss(input: &[u8]) -> bool {
    if plain_for_xss(input) {
        return false;
    }
    xss().is_match(&normalize(input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        for set in [SQLI_LOW, SQLI_HIGH, XSS] {
            for p in set {
                assert!(regex::bytes::Regex::new(&format!("(?i-u){p}")).is_ok(), "{p}");
            }
        }
    }

    /// The prefilters only skip inputs no pattern can match: checked on
    /// strings built from the pieces the patterns look for.
    #[test]
    fn prefilters_never_hide_a_match() {
        #[rustfmt::skip]
        let pieces: [&[u8]; 26] = [
            b"on", b"ON", b"error", b"load", b"=", b" ", b"x", b"srcdoc", b"innerhtml", b".", b"/", b"*", b"\0",
            b"_", b"1", b"\t", b"sys", b"objects", b"--", b"0x", b"pg_sleep", b"-", b"a", b"'", b"formaction", b";",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let mut input = Vec::new();
            for _ in 0..(next() % 8 + 1) {
                input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let n = normalize(&input);
            if plain_for_xss(&input) {
                assert!(!xss().is_match(&n), "XSS prefilter hid {:?}", String::from_utf8_lossy(&input));
            }
            if plain_for_sqli(&input) {
                assert!(
                    !sqli_low().is_match(&n) && !sqli_high().is_match(&n),
                    "SQLi prefilter hid {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }

    #[test]
    fn sql_injections_are_found() {
        for s in [
            "1' OR '1'='1",
            "admin'--",
            "1 OR 1=1",
            "x' UNION SELECT username, password FROM users--",
            "1 union/**/select 1,2,3",
            "1; DROP TABLE players",
            "1' AND SLEEP(5)#",
            "'; exec xp_cmdshell('dir')--",
            "1' or true--",
            "1 AND (SELECT 1 FROM information_schema.tables)",
            "' or ''='",
            "x AND 1!=\"",
            ") AS t FROM users",
            "'{\"b\":2}'::jsonb <@ '{\"a\":1}'",
            "1; CREATE TABLE t(x int)",
        ] {
            assert!(is_sqli(s.as_bytes(), false), "missed: {s}");
        }
    }

    #[test]
    fn ordinary_values_are_not_sql_injection() {
        for s in [
            "PostmanRuntime/7.29.2",
            "X-UnrealEngine-Agent",
            "season2.pak",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
            "O'Brien",
            "select a skin for your character",
            "rock and roll",
            "12 = 12",
            "price>=100&sort=asc",
        ] {
            assert!(!is_sqli(s.as_bytes(), false), "false positive: {s}");
        }
    }

    #[test]
    fn scripts_are_found_and_text_is_not() {
        for s in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<svg/onload=alert(1)>",
            "javascript:alert(document.cookie)",
            "<iframe src=\"data:text/html,<script>x</script>\">",
            "<body onload=alert(1)>",
            "\"><a href=javascript:x>",
            "\"onzoom=x",
            "x{-moz-binding:url(a.xml#b)}",
            "<?import implementation=x>",
            "(![]+[])[+!+[]]",
        ] {
            assert!(is_xss(s.as_bytes()), "missed: {s}");
        }
        for s in [
            "a < b and c > d",
            "Tom & Jerry",
            "x-vendor-type: a_vendor",
            "<3 this game",
            "the onerror handler",
            "status=online&mode=on",
        ] {
            assert!(!is_xss(s.as_bytes()), "false positive: {s}");
        }
    }
}
