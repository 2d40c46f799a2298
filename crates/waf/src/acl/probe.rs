//! Every inspection of one source (a field with its transformations) runs
//! together, once per request, the first time a rule needs that source.
//!
//! A web ACL typically has many rules on few fields: ten ByteMatch rules on
//! the headers, several SqliMatch rules on the query. Rule by rule, each
//! would scan the same values again. Instead each source has a [`Probe`]:
//! its distinct leaf matchers, with all ByteMatch needles in one
//! Aho–Corasick automaton and all RegexMatch patterns in one `RegexSet`.
//! ByteMatch needles anchored at the start (EXACTLY, STARTS_WITH) or the end
//! (ENDS_WITH) are looked up by the value's first or last byte instead, so a
//! value that starts with no needle's first byte costs one bit test.
//! Running the probe on the source's values gives one verdict per leaf, and
//! a rule's statement then only reads verdicts. Identical leaves (the same
//! `SqliMatch` in ten rules) are one leaf, run once.

use std::borrow::Cow;
use std::cell::Cell;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::bytes::{RegexSet, RegexSetBuilder};

use super::matcher::{Matcher, Position, is_word};
use super::sets::{REGEX_SIZE_LIMIT, regex_reason};
use super::{bit, set_bit};

/// The distinct leaves of one source, and how they run together.
#[derive(Debug, Clone, Default)]
pub(super) struct Probe {
    /// The bit of leaf 0 in an evaluation's state; leaf `i` is `base + i`.
    pub(super) base: usize,
    leaves: Vec<Matcher>,
    /// EXACTLY and STARTS_WITH leaves, by the needle's first byte.
    starts: ByEdgeByte,
    /// ENDS_WITH leaves, by the needle's last byte.
    ends: ByEdgeByte,
    /// CONTAINS and CONTAINS_WORD needles (when the source has two or more):
    /// automaton pattern `i` is leaf `needles[i].0` with constraint `needles[i].1`.
    automaton: Option<AhoCorasick>,
    needles: Vec<(usize, Position)>,
    /// RegexMatch patterns: set pattern `i` is leaf `regex_leaves[i]`.
    regexes: Option<RegexSet>,
    regex_leaves: Vec<usize>,
    /// Leaves run one by one on each value.
    singles: Vec<usize>,
    /// The leaves an empty value matches, found once when compiled: an empty
    /// value (no query string, an empty header) then costs no matcher.
    empty: Vec<usize>,
}

impl Probe {
    /// Adds a leaf, or finds the identical one already there; its index.
    pub(super) fn add(&mut self, m: Matcher) -> usize {
        if let Some(i) = self.leaves.iter().position(|l| l.same_as(&m)) {
            return i;
        }
        self.leaves.push(m);
        self.leaves.len() - 1
    }

    /// How many leaves.
    pub(super) fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Builds the automaton and the regex set once every leaf is in; the
    /// verdicts go to bits `base..base + len()`.
    pub(super) fn finish(&mut self, base: usize) -> Result<(), String> {
        self.base = base;
        let bytes: Vec<usize> =
            (0..self.leaves.len()).filter(|i| matches!(self.leaves[*i], Matcher::Bytes { .. })).collect();
        let regexes: Vec<usize> =
            (0..self.leaves.len()).filter(|i| matches!(self.leaves[*i], Matcher::Regex(_))).collect();
        self.singles = (0..self.leaves.len()).filter(|i| !bytes.contains(i) && !regexes.contains(i)).collect();

        let mut floating = Vec::new();
        for &i in &bytes {
            if let Matcher::Bytes { needle, position, .. } = &self.leaves[i] {
                match (position, needle.first(), needle.last()) {
                    (Position::Exactly | Position::StartsWith, Some(&b), _) => self.starts.add(b, i),
                    (Position::EndsWith, _, Some(&b)) => self.ends.add(b, i),
                    _ => floating.push(i),
                }
            }
        }
        if floating.len() >= 2 {
            let mut patterns = Vec::with_capacity(floating.len());
            for &i in &floating {
                if let Matcher::Bytes { needle, position, .. } = &self.leaves[i] {
                    patterns.push(needle.as_slice());
                    self.needles.push((i, *position));
                }
            }
            // Standard match semantics report every occurrence of every
            // needle (overlapping search), which CONTAINS_WORD needs.
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .map_err(|e| format!("the ByteMatch search strings do not fit in one automaton: {e}"))?;
            self.automaton = Some(ac);
        } else {
            self.singles.extend(floating);
        }

        if !regexes.is_empty() {
            let patterns: Vec<&str> = regexes
                .iter()
                .filter_map(|i| match &self.leaves[*i] {
                    Matcher::Regex(r) => Some(r.as_str()),
                    _ => None,
                })
                .collect();
            let set = RegexSetBuilder::new(patterns)
                .size_limit(REGEX_SIZE_LIMIT * 4)
                .dfa_size_limit(REGEX_SIZE_LIMIT * 4)
                .build()
                .map_err(|e| {
                    format!("the regular expressions on one field do not fit together: {}", regex_reason(&e))
                })?;
            self.regexes = Some(set);
            self.regex_leaves = regexes;
        }
        self.singles.sort_unstable();
        // Every leaf is a pure function of the value: ask once what "" gives.
        self.base = 0;
        let bits: Vec<Cell<u64>> = (0..self.leaves.len().div_ceil(64)).map(|_| Cell::new(0)).collect();
        self.scan(&[Cow::Borrowed(&b""[..])], &bits, false);
        self.empty = (0..self.leaves.len()).filter(|i| bit(&bits, *i)).collect();
        self.base = base;
        Ok(())
    }

    /// Sets the bit of each leaf that any of `values` matches.
    pub(super) fn run(&self, values: &[Cow<'_, [u8]>], bits: &[Cell<u64>]) {
        let empties = values.iter().filter(|v| v.is_empty()).count();
        if empties > 0 {
            for &leaf in &self.empty {
                set_bit(bits, self.base + leaf);
            }
        }
        if empties < values.len() {
            self.scan(values, bits, empties > 0);
        }
    }

    /// Runs every leaf on `values` (on the non-empty ones if `skip_empty`).
    fn scan(&self, values: &[Cow<'_, [u8]>], bits: &[Cell<u64>], skip_empty: bool) {
        let each = || values.iter().filter(move |v| !(skip_empty && v.is_empty()));
        let hit = |leaf: usize| bit(bits, self.base + leaf);
        let set = |leaf: usize| set_bit(bits, self.base + leaf);
        for v in values {
            if let Some(&first) = v.first() {
                self.starts.run(first, v, &self.leaves, hit, set);
            }
            if let Some(&last) = v.last() {
                self.ends.run(last, v, &self.leaves, hit, set);
            }
        }
        if let Some(ac) = &self.automaton {
            // A value shorter than every needle holds none of them.
            for v in values.iter().filter(|v| v.len() >= ac.min_pattern_len()) {
                for m in ac.find_overlapping_iter(&**v) {
                    let (leaf, position) = self.needles[m.pattern().as_usize()];
                    if !hit(leaf) && placed(position, v, m.start(), m.end()) {
                        set(leaf);
                    }
                }
            }
        }
        if let Some(set_re) = &self.regexes {
            if set_re.len() == 1 {
                if each().any(|v| set_re.is_match(v)) {
                    set(self.regex_leaves[0]);
                }
            } else {
                for v in each() {
                    // `matches` allocates its answer: ask only when some
                    // pattern matches, which most values do not.
                    if set_re.is_match(v) {
                        for i in set_re.matches(v).iter() {
                            set(self.regex_leaves[i]);
                        }
                    }
                }
            }
        }
        for &i in &self.singles {
            if each().any(|v| self.leaves[i].matches(v)) {
                set(i);
            }
        }
    }
}

/// Leaves keyed by one byte of their needle, with a bitmap of those bytes.
#[derive(Debug, Clone, Default)]
struct ByEdgeByte {
    present: [u64; 4],
    leaves: Vec<(u8, usize)>,
}

impl ByEdgeByte {
    fn add(&mut self, b: u8, leaf: usize) {
        self.present[usize::from(b >> 6)] |= 1 << (b & 63);
        self.leaves.push((b, leaf));
    }

    /// Runs the leaves whose key byte is `b` (the value's first or last) on `v`.
    fn run(&self, b: u8, v: &[u8], leaves: &[Matcher], hit: impl Fn(usize) -> bool, set: impl Fn(usize)) {
        if self.present[usize::from(b >> 6)] & (1 << (b & 63)) == 0 {
            return;
        }
        for &(key, leaf) in &self.leaves {
            if key == b && !hit(leaf) && leaves[leaf].matches(v) {
                set(leaf);
            }
        }
    }
}

/// Whether an occurrence of a needle at `start..end` of `v` satisfies the
/// ByteMatch positional constraint.
pub(super) fn placed(position: Position, v: &[u8], start: usize, end: usize) -> bool {
    match position {
        Position::Exactly => start == 0 && end == v.len(),
        Position::StartsWith => start == 0,
        Position::EndsWith => end == v.len(),
        Position::Contains => true,
        // AWS: bounded by non-word characters or the value's ends.
        Position::ContainsWord => (start == 0 || !is_word(v[start - 1])) && (end == v.len() || !is_word(v[end])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(needle: &str, position: Position) -> Matcher {
        let needle = needle.as_bytes().to_vec();
        let finder = Box::new(memchr::memmem::Finder::new(&needle).into_owned());
        Matcher::Bytes { needle, position, finder }
    }

    /// The automaton gives the same verdicts as each matcher on its own.
    #[test]
    fn the_automaton_agrees_with_single_matchers() {
        let leaves = [
            bytes("abc", Position::Exactly),
            bytes("abc", Position::StartsWith),
            bytes("abc", Position::EndsWith),
            bytes("bc", Position::Contains),
            bytes("abc", Position::ContainsWord),
            bytes("c", Position::ContainsWord),
            bytes("ab", Position::Contains),
        ];
        let mut probe = Probe::default();
        for l in leaves.iter().cloned() {
            probe.add(l);
        }
        assert_eq!(probe.add(bytes("abc", Position::Exactly)), 0, "identical leaves are one");
        probe.finish(3).expect("builds");
        assert!(probe.automaton.is_some(), "two CONTAINS and two CONTAINS_WORD needles");
        assert_eq!((probe.starts.leaves.len(), probe.ends.leaves.len()), (2, 1));
        for value in ["abc", "abcabc", "xabc", "abc x", "x abc", "c", "a-c", "ab-c", "", "zzz", "bcabc c"] {
            let values = [Cow::Borrowed(value.as_bytes())];
            let want: Vec<bool> = leaves.iter().map(|l| l.matches(value.as_bytes())).collect();
            let bits = [Cell::new(0u64)];
            probe.run(&values, &bits);
            let got: Vec<bool> = (0..leaves.len()).map(|i| bit(&bits, 3 + i)).collect();
            assert_eq!(got, want, "{value:?}");
            assert_eq!(bits[0].get() & 0b111, 0, "bits below base are left alone");
            // With an empty value beside it: the union of both verdicts.
            let mixed = [Cow::Borrowed(&b""[..]), Cow::Borrowed(value.as_bytes())];
            let bits = [Cell::new(0u64)];
            probe.run(&mixed, &bits);
            let got: Vec<bool> = (0..leaves.len()).map(|i| bit(&bits, 3 + i)).collect();
            let want: Vec<bool> = leaves.iter().map(|l| l.matches(b"") || l.matches(value.as_bytes())).collect();
            assert_eq!(got, want, "\"\" and {value:?}");
        }
    }
}
