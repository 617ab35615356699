//! A map kept as a sorted vector: for the many tiny maps of the catalogue (the providers of
//! one public name, the pairs claiming one plain name), which hold one or two entries and
//! would each cost a whole B-tree node (room for eleven) as a `BTreeMap`.

/// A sorted-vector map; lookups are binary searches, changes shift the vector.
#[derive(Debug, Clone)]
pub(crate) struct SmallMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    /// Inserts or replaces the value of `key`.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        match self.entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(at) => self.entries[at].1 = value,
            Err(at) => self.entries.insert(at, (key, value)),
        }
        self.entries.shrink_to_fit();
    }

    /// Removes and returns the value of `key`.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.entries.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        let (_, value) = self.entries.remove(at);
        self.entries.shrink_to_fit();
        Some(value)
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        let at = self.entries.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        Some(&self.entries[at].1)
    }

    /// The smallest key.
    pub(crate) fn first_key(&self) -> Option<&K> {
        self.entries.first().map(|(k, _)| k)
    }

    /// Entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Values in key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Whether the map is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_keys_sorted_and_unique() {
        let mut map = SmallMap::default();
        map.insert(3, "c");
        map.insert(1, "a");
        map.insert(3, "C");
        assert_eq!(map.first_key(), Some(&1));
        assert_eq!(map.values().copied().collect::<Vec<_>>(), ["a", "C"]);
        assert_eq!(map.remove(&1), Some("a"));
        assert_eq!(map.remove(&1), None);
        map.insert(2, "b");
        assert_eq!(map.get(&2), Some(&"b"));
        assert_eq!(map.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [2, 3]);
        assert!(!map.is_empty());
    }
}
