//! AWS WAF text transformations, applied in `Priority` order before a
//! statement inspects a component. Semantics follow the AWS WAF developer
//! guide, "Using text transformations in AWS WAF"
//! (`waf-rule-statement-transformation.md`). Every transformation is
//! linear in its input and never grows it by more than the input's length.

use std::borrow::Cow;

/// One supported transformation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// `NONE`.
    None,
    /// `LOWERCASE`.
    Lowercase,
    /// `UPPERCASE`.
    Uppercase,
    /// `URL_DECODE`: `%xx` and `+` as space.
    UrlDecode,
    /// `URL_DECODE_UNI`: as `URL_DECODE`, plus `%uXXXX`.
    UrlDecodeUni,
    /// `HTML_ENTITY_DECODE`.
    HtmlEntityDecode,
    /// `COMPRESS_WHITE_SPACE`.
    CompressWhiteSpace,
    /// `CMD_LINE`.
    CmdLine,
    /// `BASE64_DECODE` (invalid input is left as it is).
    Base64Decode,
    /// `REPLACE_COMMENTS`: `/* ... */` to one space.
    ReplaceComments,
    /// `REMOVE_NULLS`.
    RemoveNulls,
    /// `REPLACE_NULLS`: NUL to space.
    ReplaceNulls,
    /// `TRIM`.
    Trim,
    /// `TRIM_LEFT`.
    TrimLeft,
    /// `TRIM_RIGHT`.
    TrimRight,
    /// `REMOVE_WHITESPACE`.
    RemoveWhitespace,
    /// `NORMALIZE_PATH`: repeated slashes, `./` and `../` (not at the start).
    NormalizePath,
    /// `HEX_DECODE`.
    HexDecode,
}

impl Transform {
    /// Parses an AWS `Type`.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "NONE" => Transform::None,
            "LOWERCASE" => Transform::Lowercase,
            "UPPERCASE" => Transform::Uppercase,
            "URL_DECODE" => Transform::UrlDecode,
            "URL_DECODE_UNI" => Transform::UrlDecodeUni,
            "HTML_ENTITY_DECODE" => Transform::HtmlEntityDecode,
            "COMPRESS_WHITE_SPACE" => Transform::CompressWhiteSpace,
            "CMD_LINE" => Transform::CmdLine,
            "BASE64_DECODE" => Transform::Base64Decode,
            "REPLACE_COMMENTS" => Transform::ReplaceComments,
            "REMOVE_NULLS" => Transform::RemoveNulls,
            "REPLACE_NULLS" => Transform::ReplaceNulls,
            "TRIM" => Transform::Trim,
            "TRIM_LEFT" => Transform::TrimLeft,
            "TRIM_RIGHT" => Transform::TrimRight,
            "REMOVE_WHITESPACE" => Transform::RemoveWhitespace,
            "NORMALIZE_PATH" => Transform::NormalizePath,
            "HEX_DECODE" => Transform::HexDecode,
            other => return Err(format!("text transformation {other:?} is not supported by shardgate")),
        })
    }

    /// Applies the transformation.
    pub fn apply<'a>(self, input: Cow<'a, [u8]>) -> Cow<'a, [u8]> {
        // A value the transformation would not change is passed on as it is
        // (most values have nothing to decode): no copy, no allocation.
        let unchanged = match self {
            Transform::None => true,
            Transform::Lowercase => !input.iter().any(u8::is_ascii_uppercase),
            Transform::Uppercase => !input.iter().any(u8::is_ascii_lowercase),
            Transform::UrlDecode | Transform::UrlDecodeUni => memchr::memchr2(b'%', b'+', &input).is_none(),
            Transform::HtmlEntityDecode => memchr::memchr(b'&', &input).is_none(),
            Transform::CompressWhiteSpace => {
                !input.iter().any(|b| matches!(b, b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0))
                    && memchr::memmem::find(&input, b"  ").is_none()
            }
            Transform::RemoveNulls | Transform::ReplaceNulls => memchr::memchr(0, &input).is_none(),
            Transform::RemoveWhitespace => !input.iter().any(|b| is_space(*b)),
            _ => false,
        };
        if unchanged { input } else { self.rewrite(input) }
    }

    /// Applies the transformation without first checking whether it would
    /// change anything.
    fn rewrite(self, input: Cow<'_, [u8]>) -> Cow<'_, [u8]> {
        match self {
            Transform::None => input,
            Transform::Lowercase => Cow::Owned(input.to_ascii_lowercase()),
            Transform::Uppercase => Cow::Owned(input.to_ascii_uppercase()),
            Transform::UrlDecode => Cow::Owned(url_decode(&input, false)),
            Transform::UrlDecodeUni => Cow::Owned(url_decode(&input, true)),
            Transform::HtmlEntityDecode => Cow::Owned(html_entity_decode(&input)),
            Transform::CompressWhiteSpace => Cow::Owned(compress_white_space(&input)),
            Transform::CmdLine => Cow::Owned(cmd_line(&input)),
            Transform::Base64Decode => match base64_decode(&input) {
                Some(d) => Cow::Owned(d),
                None => input,
            },
            Transform::ReplaceComments => Cow::Owned(replace_comments(&input)),
            Transform::RemoveNulls => Cow::Owned(input.iter().copied().filter(|&b| b != 0).collect()),
            Transform::ReplaceNulls => Cow::Owned(input.iter().map(|&b| if b == 0 { b' ' } else { b }).collect()),
            Transform::Trim => trimmed(input, <[u8]>::trim_ascii),
            Transform::TrimLeft => trimmed(input, <[u8]>::trim_ascii_start),
            Transform::TrimRight => trimmed(input, <[u8]>::trim_ascii_end),
            Transform::RemoveWhitespace => Cow::Owned(input.iter().copied().filter(|b| !is_space(*b)).collect()),
            Transform::NormalizePath => Cow::Owned(normalize_path(&input, PathRules::Waf)),
            Transform::HexDecode => match hex_decode(&input) {
                Some(d) => Cow::Owned(d),
                None => input,
            },
        }
    }
}

/// A trimmed value: a slice of a borrowed one, a copy of an owned one.
fn trimmed<'a>(input: Cow<'a, [u8]>, trim: fn(&[u8]) -> &[u8]) -> Cow<'a, [u8]> {
    match input {
        Cow::Borrowed(b) => Cow::Borrowed(trim(b)),
        Cow::Owned(o) => Cow::Owned(trim(&o).to_vec()),
    }
}

/// Applies `list` (already sorted by priority) to `input`.
pub fn apply_all<'a>(list: &[Transform], input: &'a [u8]) -> Cow<'a, [u8]> {
    let mut out = Cow::Borrowed(input);
    for t in list {
        out = t.apply(out);
    }
    out
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte that the percent-encoding `%XX` at `s[i..i + 3]` stands for
/// (RFC 3986 §2.1; hex digits of either case); `None` when `s[i]` does not
/// start one.
pub fn percent_byte(s: &[u8], i: usize) -> Option<u8> {
    match s.get(i..i + 3)? {
        [b'%', h, l] => Some(hex(*h)? << 4 | hex(*l)?),
        _ => None,
    }
}

fn url_decode(s: &[u8], unicode: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if unicode && i + 5 < s.len() && matches!(s.get(i + 1), Some(b'u' | b'U')) => {
                let digits = s
                    .get(i + 2..i + 6)
                    .and_then(|d| d.iter().try_fold(0u32, |acc, &c| hex(c).map(|v| acc * 16 + u32::from(v))));
                match digits.and_then(char::from_u32) {
                    Some(c) => {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        i += 6;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'%' => match percent_byte(s, i) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn html_entity_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'&' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let rest = &s[i + 1..];
        let end = rest.iter().take(12).position(|&b| b == b';');
        let decoded = end.and_then(|e| {
            let name = &rest[..e];
            let ch = match name {
                b"quot" => Some('"'),
                b"amp" => Some('&'),
                b"lt" => Some('<'),
                b"gt" => Some('>'),
                b"apos" => Some('\''),
                b"nbsp" => Some('\u{a0}'),
                _ if name.first() == Some(&b'#') => {
                    let num = &name[1..];
                    let (digits, radix) = match num.first() {
                        Some(b'x' | b'X') => (&num[1..], 16),
                        _ => (num, 10),
                    };
                    std::str::from_utf8(digits)
                        .ok()
                        .filter(|d| !d.is_empty())
                        .and_then(|d| u32::from_str_radix(d, radix).ok())
                        .and_then(char::from_u32)
                }
                _ => None,
            };
            ch.map(|c| (c, e + 2))
        });
        match decoded {
            Some((c, used)) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += used;
            }
            None => {
                out.push(b'&');
                i += 1;
            }
        }
    }
    out
}

fn compress_white_space(s: &[u8]) -> Vec<u8> {
    // \f \t \n \r \v and NBSP (0xa0, also as UTF-8 c2 a0) become one space.
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    let mut in_space = false;
    while i < s.len() {
        let (space, used) = match s[i] {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0 => (true, 1),
            0xc2 if s.get(i + 1) == Some(&0xa0) => (true, 2),
            _ => (false, 1),
        };
        if space {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.extend_from_slice(&s[i..i + used]);
            in_space = false;
        }
        i += used;
    }
    out
}

fn cmd_line(s: &[u8]) -> Vec<u8> {
    // Delete \ " ' ^; delete spaces before / and (; turn , and ; into a
    // space; compress spaces; lowercase.
    let mut tmp: Vec<u8> = Vec::with_capacity(s.len());
    for &b in s {
        match b {
            b'\\' | b'"' | b'\'' | b'^' => {}
            b',' | b';' => tmp.push(b' '),
            b'/' | b'(' => {
                while tmp.last().is_some_and(|c| is_space(*c)) {
                    tmp.pop();
                }
                tmp.push(b);
            }
            b => tmp.push(b.to_ascii_lowercase()),
        }
    }
    compress_white_space(&tmp)
}

fn replace_comments(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'/' && s.get(i + 1) == Some(&b'*') {
            match s[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(p) => i += 2 + p + 2,
                // An unterminated comment runs to the end.
                None => i = s.len(),
            }
            out.push(b' ');
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Where [`normalize_path`]'s two users differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRules {
    /// AWS WAF's `NORMALIZE_PATH`: empty segments (`//`) go too, a
    /// relative path keeps the `..` that climb above its start, and the
    /// result ends with `/` only when the input did.
    Waf,
    /// RFC 3986 §5.2.4 on an absolute path (the edge's request paths):
    /// empty segments stay, and a final `.` or `..` leaves a trailing `/`.
    Rfc3986,
}

/// Removes dot-segments from a path: `.` goes, `..` removes the segment
/// before it (never above the root of an absolute path).
pub fn normalize_path(s: &[u8], rules: PathRules) -> Vec<u8> {
    let absolute = s.first() == Some(&b'/');
    let keep_empty = rules == PathRules::Rfc3986;
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut leading_up = 0usize;
    let mut dot_last = false;
    for seg in s[usize::from(absolute)..].split(|&b| b == b'/') {
        dot_last = matches!(seg, b"." | b"..");
        match seg {
            b"" if keep_empty => parts.push(seg),
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() && !absolute {
                    leading_up += 1;
                }
            }
            _ => parts.push(seg),
        }
    }
    let mut out = Vec::with_capacity(s.len() + 1);
    if absolute {
        out.push(b'/');
    }
    for _ in 0..leading_up {
        out.extend_from_slice(b"../");
    }
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(part);
    }
    let trailing = match rules {
        PathRules::Waf => s.len() > 1 && s.last() == Some(&b'/') && !out.ends_with(b"/"),
        PathRules::Rfc3986 => dot_last && !parts.is_empty(),
    };
    if trailing {
        out.push(b'/');
    }
    out
}

fn hex_decode(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2).map(|p| Some(hex(p[0])? * 16 + hex(p[1])?)).collect()
}

fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let body: Vec<u8> = s.iter().copied().filter(|&c| c != b'=' && !is_space(c)).collect();
    if body.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        match chunk.len() {
            4 => out.extend_from_slice(&bytes),
            3 => out.extend_from_slice(&bytes[..2]),
            2 => out.push(bytes[0]),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: &str, input: &str) -> String {
        let out = Transform::parse(kind).expect("known").apply(Cow::Borrowed(input.as_bytes()));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The shortcut for values a transformation leaves alone gives what the
    /// transformation itself gives, for every type.
    #[test]
    fn unchanged_values_skip_the_rewrite_without_changing_results() {
        let kinds = [
            "NONE",
            "LOWERCASE",
            "UPPERCASE",
            "URL_DECODE",
            "URL_DECODE_UNI",
            "HTML_ENTITY_DECODE",
            "COMPRESS_WHITE_SPACE",
            "CMD_LINE",
            "BASE64_DECODE",
            "REPLACE_COMMENTS",
            "REMOVE_NULLS",
            "REPLACE_NULLS",
            "TRIM",
            "TRIM_LEFT",
            "TRIM_RIGHT",
            "REMOVE_WHITESPACE",
            "NORMALIZE_PATH",
            "HEX_DECODE",
        ];
        let inputs: [&[u8]; 14] = [
            b"",
            b"plain",
            b"MiXeD Case",
            b"a  b",
            b"a b c",
            b"tab\there",
            b"nbsp\xc2\xa0x",
            b"%41+b",
            b"&lt;b&gt;",
            b"nul\0byte",
            b" trim me ",
            b"/a/./b/../c",
            b"6869",
            b"aGVsbG8=",
        ];
        for kind in kinds {
            let t = Transform::parse(kind).expect("known");
            for input in inputs {
                let fast = t.apply(Cow::Borrowed(input));
                let slow = t.rewrite(Cow::Borrowed(input));
                assert_eq!(fast, slow, "{kind} on {:?}", String::from_utf8_lossy(input));
            }
        }
    }

    #[test]
    fn transformations_follow_the_aws_guide() {
        assert_eq!(t("LOWERCASE", "PostmanRuntime"), "postmanruntime");
        assert_eq!(t("URL_DECODE", "%3Cscript%3E+x%zz"), "<script> x%zz");
        assert_eq!(t("URL_DECODE_UNI", "%u003Cb"), "<b");
        assert_eq!(t("HTML_ENTITY_DECODE", "&lt;a&gt;&quot;&#x41;&#66;&bogus;"), "<a>\"AB&bogus;");
        assert_eq!(t("COMPRESS_WHITE_SPACE", "a \t\n\r b\u{a0}c"), "a b c");
        assert_eq!(t("CMD_LINE", "C^:\\W\"in'dows ,sys ( /x"), "c:windows sys( /x".replace("( /", "(/"));
        assert_eq!(t("BASE64_DECODE", "UG9zdG1hbg=="), "Postman");
        assert_eq!(t("BASE64_DECODE", "not base64!"), "not base64!");
        assert_eq!(t("REPLACE_COMMENTS", "un/**/ion sel/*x*/ect /* open"), "un ion sel ect  ");
        assert_eq!(t("NORMALIZE_PATH", "/a//b/./c/../d/"), "/a/b/d/");
        assert_eq!(t("HEX_DECODE", "414243"), "ABC");
        assert_eq!(t("TRIM", "  x  "), "x");
        assert!(Transform::parse("MD5").is_err());
    }
}
