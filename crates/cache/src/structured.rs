//! The Dictionary of Structured Field Values (RFC 8941 §3.2, parsed as §4.2
//! says), for targeted cache-control fields such as `CDN-Cache-Control`
//! (RFC 9213 §2.1: "Targeted fields are Dictionary Structured Fields").
//!
//! The parser validates the whole field (any error fails it, and RFC 9213
//! then ignores the field) and keeps only what cache directives need: each
//! member's key and bare item. Parameters and inner-list members are checked
//! and dropped (RFC 9213: "Parameters received on cache directives are to be
//! ignored").

use http::HeaderMap;
use http::header::HeaderName;

/// Most members kept from one field; a longer dictionary fails to parse
/// (RFC 8941 §3.2 asks parsers to support at least 1024).
pub const MAX_MEMBERS: usize = 1024;

/// Why a field is not a valid Structured Field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid structured field (RFC 8941): error at byte {at}")]
pub struct InvalidField {
    /// Offset in the combined field value where parsing failed.
    pub at: usize,
}

/// A member's value, as cache directives use it.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `max-age=60`.
    Integer(i64),
    /// `1.5` (valid, but no cache directive takes one).
    Decimal,
    /// `no-cache="set-cookie"`.
    String(String),
    /// `foo=bar`.
    Token(String),
    /// `:base64:`.
    Bytes,
    /// A bare key (`no-store`) is `true`; `?0` is `false`.
    Boolean(bool),
    /// `(a b)`.
    InnerList,
}

/// Parses every field line of `name` as one Dictionary (RFC 8941 §4.2: the
/// lines are combined with commas first). `None` when the field is absent,
/// `Some(Err(_))` when it does not parse.
pub fn dictionary(headers: &HeaderMap, name: &HeaderName) -> Option<Result<Vec<(String, Item)>, InvalidField>> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut joined = Vec::new();
    for (i, line) in lines.enumerate() {
        if i > 0 {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(line.as_bytes());
    }
    Some(parse_dictionary(&joined))
}

/// Parses one Dictionary (RFC 8941 §4.2.2), after discarding leading and
/// trailing spaces (§4.2). Later duplicates of a key replace earlier ones.
pub fn parse_dictionary(input: &[u8]) -> Result<Vec<(String, Item)>, InvalidField> {
    let mut p = Parser { s: input, i: 0 };
    p.skip_sp();
    let mut out: Vec<(String, Item)> = Vec::new();
    while !p.done() {
        let key = p.key()?;
        let item = if p.eat(b'=') {
            if p.peek() == Some(b'(') {
                p.inner_list()?;
                Item::InnerList
            } else {
                p.item()?
            }
        } else {
            p.parameters()?;
            Item::Boolean(true)
        };
        if let Some(slot) = out.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = item;
        } else if out.len() < MAX_MEMBERS {
            out.push((key, item));
        } else {
            return Err(p.fail());
        }
        p.skip_ows();
        if p.done() {
            break;
        }
        if !p.eat(b',') {
            return Err(p.fail());
        }
        p.skip_ows();
        if p.done() {
            // A trailing comma.
            return Err(p.fail());
        }
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn fail(&self) -> InvalidField {
        InvalidField { at: self.i }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`.
    fn key(&mut self) -> Result<String, InvalidField> {
        let start = self.i;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.i += 1,
            _ => return Err(self.fail()),
        }
        while let Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*') = self.peek() {
            self.i += 1;
        }
        // ASCII by construction.
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn item(&mut self) -> Result<Item, InvalidField> {
        let item = self.bare_item()?;
        self.parameters()?;
        Ok(item)
    }

    fn parameters(&mut self) -> Result<(), InvalidField> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Ok(())
    }

    fn inner_list(&mut self) -> Result<(), InvalidField> {
        if !self.eat(b'(') {
            return Err(self.fail());
        }
        loop {
            self.skip_sp();
            if self.eat(b')') {
                return self.parameters();
            }
            self.item()?;
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return Err(self.fail());
            }
        }
    }

    fn bare_item(&mut self) -> Result<Item, InvalidField> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b'*' | b'a'..=b'z' | b'A'..=b'Z') => self.token(),
            Some(b':') => self.bytes(),
            Some(b'?') => self.boolean(),
            _ => Err(self.fail()),
        }
    }

    /// RFC 8941 §4.2.4: at most 15 integer digits; a decimal has at most 12
    /// before the point and 1 to 3 after it.
    fn number(&mut self) -> Result<Item, InvalidField> {
        let negative = self.eat(b'-');
        let start = self.i;
        let mut point = None;
        while let Some(b) = self.peek() {
            match b {
                b'0'..=b'9' => {}
                b'.' if point.is_none() => {
                    if self.i - start > 12 {
                        return Err(self.fail());
                    }
                    point = Some(self.i);
                }
                _ => break,
            }
            self.i += 1;
            let len = self.i - start;
            if (point.is_none() && len > 15) || len > 16 {
                return Err(self.fail());
            }
        }
        let text = &self.s[start..self.i];
        if text.is_empty() || !text[0].is_ascii_digit() {
            return Err(self.fail());
        }
        match point {
            None => {
                let n = text.iter().fold(0i64, |n, &b| n * 10 + i64::from(b - b'0'));
                Ok(Item::Integer(if negative { -n } else { n }))
            }
            Some(p) => {
                let frac = self.i - p - 1;
                if frac == 0 || frac > 3 {
                    return Err(self.fail());
                }
                Ok(Item::Decimal)
            }
        }
    }

    fn string(&mut self) -> Result<Item, InvalidField> {
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.fail()),
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                        _ => return Err(self.fail()),
                    }
                }
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Item::String(out));
                }
                Some(c @ 0x20..=0x7e) => out.push(char::from(c)),
                Some(_) => return Err(self.fail()),
            }
            self.i += 1;
        }
    }

    /// `sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" )`.
    fn token(&mut self) -> Result<Item, InvalidField> {
        let start = self.i;
        self.i += 1;
        while let Some(b) = self.peek() {
            if !(is_tchar(b) || b == b':' || b == b'/') {
                break;
            }
            self.i += 1;
        }
        Ok(Item::Token(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
    }

    fn bytes(&mut self) -> Result<Item, InvalidField> {
        self.i += 1;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b':' => return Ok(Item::Bytes),
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => {}
                _ => return Err(self.fail()),
            }
        }
        Err(self.fail())
    }

    fn boolean(&mut self) -> Result<Item, InvalidField> {
        self.i += 1;
        let v = match self.peek() {
            Some(b'1') => true,
            Some(b'0') => false,
            _ => return Err(self.fail()),
        };
        self.i += 1;
        Ok(Item::Boolean(v))
    }
}

/// `tchar` of RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<Vec<(String, Item)>, InvalidField> {
        parse_dictionary(s.as_bytes())
    }

    #[test]
    fn members_and_types() {
        let got =
            d(r#"max-age=600, no-store, private="set-cookie, x", a=?0, b=1.5, c=tok/en:x, e=:aGk=:, f=(1 "x");p"#)
                .expect("valid");
        let want = vec![
            ("max-age".to_owned(), Item::Integer(600)),
            ("no-store".to_owned(), Item::Boolean(true)),
            ("private".to_owned(), Item::String("set-cookie, x".into())),
            ("a".to_owned(), Item::Boolean(false)),
            ("b".to_owned(), Item::Decimal),
            ("c".to_owned(), Item::Token("tok/en:x".into())),
            ("e".to_owned(), Item::Bytes),
            ("f".to_owned(), Item::InnerList),
        ];
        assert_eq!(got, want);
        assert_eq!(
            d("  max-age=1;x=2;y  ,\tz  "),
            Ok(vec![("max-age".into(), Item::Integer(1)), ("z".into(), Item::Boolean(true))])
        );
        assert_eq!(d("a=1, a=2"), Ok(vec![("a".into(), Item::Integer(2))]), "the last duplicate wins (§4.2.2)");
        assert_eq!(d(""), Ok(vec![]));
        assert_eq!(d("a=-5"), Ok(vec![("a".into(), Item::Integer(-5))]));
        assert_eq!(d("a=999999999999999"), Ok(vec![("a".into(), Item::Integer(999_999_999_999_999))]));
    }

    #[test]
    fn errors_fail_the_whole_field() {
        for bad in [
            "max-age =100",
            "max-age= 100",
            "MaX-aGe=3600",
            "max-age=10000, &&&&&",
            "a,",
            "a,,b",
            "a=1 b=2",
            "a='x'",
            "a=\"unterminated",
            "a=\"bad\\escape\"",
            "a=1.",
            "a=1.2345",
            "a=1234567890123.5",
            "a=1234567890123456",
            "a=--1",
            "a=?2",
            "a=:not base64!:",
            "a=(1 2",
            "a=(1,2)",
            "1a",
            "a=\"\u{e9}\"",
        ] {
            assert!(d(bad).is_err(), "{bad:?} must fail");
        }
    }
}
