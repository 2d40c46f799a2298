//! Tables keyed by SNI pattern.
//!
//! Lookups never allocate: exact names and wildcard suffixes are hash-map
//! keys, and a name's suffixes are slices of it. Names must already be
//! lower-cased (rustls lower-cases the SNI it reads).

use std::collections::HashMap;

use shardgate_model::SniPattern;

/// Values keyed by [`SniPattern`].
#[derive(Debug, Clone)]
pub struct SniTable<T> {
    exact: HashMap<Box<str>, T>,
    /// Keyed by suffix with its leading dot: `.example.com` for `*.example.com`.
    wildcard: HashMap<Box<str>, T>,
    any: Option<T>,
}

impl<T> Default for SniTable<T> {
    fn default() -> Self {
        SniTable { exact: HashMap::new(), wildcard: HashMap::new(), any: None }
    }
}

impl<T> SniTable<T> {
    /// The value for `pattern`, inserted with `make` if absent.
    pub fn entry(&mut self, pattern: &SniPattern, make: impl FnOnce() -> T) -> &mut T {
        match pattern {
            SniPattern::Exact(name) => self.exact.entry(name.clone()).or_insert_with(make),
            SniPattern::Wildcard(suffix) => self.wildcard.entry(suffix.clone()).or_insert_with(make),
            SniPattern::Any => self.any.get_or_insert_with(make),
        }
    }

    /// Certificate lookup: the exact name, else the wildcard one label up
    /// (`*.example.com` covers `a.example.com`, not `a.b.example.com`, RFC
    /// 6125 §6.4.3), else `*`.
    pub fn find_cert(&self, sni: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(sni) {
            return Some(v);
        }
        // The label the wildcard stands for is never empty: ".a.com" is not
        // covered by "*.a.com" (rustls refuses such names, but the table
        // does not rely on it).
        if let Some(dot) = sni.find('.').filter(|&d| d > 0)
            && let Some(v) = self.wildcard.get(&sni[dot..])
        {
            return Some(v);
        }
        self.any.as_ref()
    }

    /// Route lookup: every matching entry from most to least specific: the
    /// exact name, then wildcards from the longest suffix to the shortest,
    /// then `*`.
    pub fn matches<'a, 'b>(&'a self, sni: &'b str) -> impl Iterator<Item = (usize, &'a T)> + use<'a, 'b, T> {
        let exact = self.exact.get(sni).map(|v| (usize::MAX, v));
        let wild = sni
            .match_indices('.')
            .filter(|&(i, _)| i > 0)
            .filter_map(move |(i, _)| self.wildcard.get(&sni[i..]).map(|v| (sni.len() - i, v)));
        let any = self.any.as_ref().map(|v| (0, v));
        exact.into_iter().chain(wild).chain(any)
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len() + usize::from(self.any.is_some())
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.exact.values().chain(self.wildcard.values()).chain(self.any.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(patterns: &[&str]) -> SniTable<&'static str> {
        let mut t = SniTable::default();
        for p in patterns {
            let leaked: &'static str = Box::leak(p.to_string().into_boxed_str());
            *t.entry(&SniPattern::parse(p).expect("pattern"), || leaked) = leaked;
        }
        t
    }

    #[test]
    fn certificates_exact_beats_wildcard_which_covers_one_label() {
        let t = table(&["gs-1.com", "*.gs-1.com", "*.a.gs-1.com"]);
        assert_eq!(t.find_cert("gs-1.com"), Some(&"gs-1.com"));
        assert_eq!(t.find_cert("x.gs-1.com"), Some(&"*.gs-1.com"));
        assert_eq!(t.find_cert("y.a.gs-1.com"), Some(&"*.a.gs-1.com"));
        assert_eq!(t.find_cert("z.y.gs-1.com"), None, "two labels under *.gs-1.com");
        assert_eq!(t.find_cert("other.com"), None);
        let t = table(&["*"]);
        assert_eq!(t.find_cert("anything.at.all"), Some(&"*"));
    }

    #[test]
    fn routes_list_matches_from_most_to_least_specific() {
        let t = table(&["*", "*.com", "*.b.com", "a.b.com"]);
        let order: Vec<&str> = t.matches("a.b.com").map(|(_, v)| *v).collect();
        assert_eq!(order, vec!["a.b.com", "*.b.com", "*.com", "*"]);
        let order: Vec<&str> = t.matches("x.y.b.com").map(|(_, v)| *v).collect();
        assert_eq!(order, vec!["*.b.com", "*.com", "*"], "route wildcards match any depth");
    }

    /// Found by the `stream_router` fuzz target: a name that is a wildcard's
    /// suffix itself (an empty first label) matched that wildcard.
    #[test]
    fn a_wildcard_stands_for_at_least_one_character() {
        let t = table(&["*.b.com", "*.com"]);
        assert_eq!(t.find_cert(".b.com"), None);
        let order: Vec<&str> = t.matches(".b.com").map(|(_, v)| *v).collect();
        assert_eq!(order, vec!["*.com"]);
    }
}
