//! Unit tests of the vector index.

use super::*;
use mimo_proto::v1::Category;

const EAST: u128 = 1;
const NORTH_EAST: u128 = 2;
const NORTH: u128 = 3;
const WEST: u128 = 4;

fn unit(values: &[f32]) -> Vec<f32> {
    let norm = values.iter().map(|value| value * value).sum::<f32>().sqrt();
    values.iter().map(|value| value / norm).collect()
}

fn facts(key: u128, category: Category) -> RowFacts {
    RowFacts {
        key,
        category,
        importance: 0.5,
        created_at: 1_000 * key as i64,
        accessed_at: 1_000 * key as i64,
    }
}

fn keys(hits: &[IndexHit]) -> Vec<u128> {
    hits.iter().map(|hit| hit.key).collect()
}

fn query(vector: &[f32], limit: usize, min_similarity: f32) -> IndexQuery<'_> {
    IndexQuery {
        vector,
        limit,
        min_similarity,
        filter: Filter::default(),
        scoring: Scoring::Semantic,
    }
}

fn sample() -> VectorIndex {
    let mut index = VectorIndex::new(2);
    index.insert(facts(EAST, Category::Fact), &unit(&[1.0, 0.0]));
    index.insert(facts(NORTH_EAST, Category::Plan), &unit(&[1.0, 1.0]));
    index.insert(facts(NORTH, Category::Fact), &unit(&[0.0, 1.0]));
    index.insert(facts(WEST, Category::Fact), &unit(&[-1.0, 0.0]));
    index
}

#[test]
fn search_returns_the_best_first_within_the_limit() {
    let index = sample();
    let probe = unit(&[1.0, 0.2]);
    let hits = index.search(&query(&probe, 3, -1.0));
    assert_eq!(keys(&hits), [EAST, NORTH_EAST, NORTH]);
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));
    assert!(hits.iter().all(|hit| hit.score == hit.similarity));
    assert_eq!(keys(&index.search(&query(&probe, 1, -1.0))), [EAST]);
    assert_eq!(index.search(&query(&unit(&[-1.0, 0.0]), 10, -1.0)).len(), 4);
}

#[test]
fn search_applies_min_similarity_and_every_filter() {
    let index = sample();
    let probe = unit(&[1.0, 0.2]);
    assert_eq!(
        keys(&index.search(&query(&probe, 10, 0.5))),
        [EAST, NORTH_EAST]
    );
    let diagonal = unit(&[1.0, 1.0]);
    let mut facts_only = query(&diagonal, 10, -1.0);
    facts_only.filter.category = Some(Category::Fact);
    assert_eq!(keys(&index.search(&facts_only)), [EAST, NORTH, WEST]);
    let mut created = query(&probe, 10, -1.0);
    created.filter.created_after = Some(2_000);
    created.filter.created_before = Some(4_000);
    assert_eq!(keys(&index.search(&created)), [NORTH_EAST, NORTH]);
}

#[test]
fn min_importance_keeps_only_important_engrams() {
    let mut index = sample();
    assert!(index.update_facts(NORTH, |facts| facts.importance = 0.9));
    assert!(!index.update_facts(99, |facts| facts.importance = 0.9));
    let east = unit(&[1.0, 0.0]);
    let mut important = query(&east, 10, -1.0);
    important.filter.min_importance = 0.8;
    assert_eq!(keys(&index.search(&important)), [NORTH]);
}

#[test]
fn hybrid_scoring_lifts_recent_and_important_engrams_over_closer_ones() {
    let mut index = sample();
    index.update_facts(WEST, |facts| {
        facts.importance = 1.0;
        facts.accessed_at = 10_000;
    });
    let probe = unit(&[1.0, 0.0]);
    let mut hybrid = query(&probe, 4, -1.0);
    hybrid.scoring = Scoring::Hybrid {
        similarity_weight: 0.2,
        recency_weight: 0.4,
        importance_weight: 0.4,
        half_life_ms: 1_000.0,
        now_ms: 10_000,
    };
    let hits = index.search(&hybrid);
    assert_eq!(hits[0].key, WEST, "{hits:?}");
    // West: similarity -1, recency 1, importance 1: -0.2 + 0.4 + 0.4.
    assert!((hits[0].score - 0.6).abs() < 1e-5, "{hits:?}");
    assert!((hits[0].similarity + 1.0).abs() < 1e-5);
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));
}

#[test]
fn a_removed_vector_is_never_found_and_the_rest_still_score_as_themselves() {
    let mut index = sample();
    assert!(index.remove(EAST));
    assert!(!index.remove(EAST));
    assert_eq!(index.len(), 3);
    let hits = index.search(&query(&unit(&[-1.0, 0.0]), 1, -1.0));
    assert_eq!(keys(&hits), [WEST]);
    assert!((hits[0].similarity - 1.0).abs() < 1e-6);
    for key in [WEST, NORTH, NORTH_EAST] {
        assert!(index.remove(key));
    }
    assert_eq!(index.len(), 0);
    assert!(index.search(&query(&unit(&[1.0, 0.0]), 5, -1.0)).is_empty());
}

#[test]
fn insert_of_a_known_key_replaces_its_vector() {
    let mut index = sample();
    index.insert(facts(WEST, Category::Fact), &unit(&[1.0, 0.0]));
    assert_eq!(index.len(), 4);
    let hits = index.search(&query(&unit(&[-1.0, 0.0]), 1, -1.0));
    assert_eq!(keys(&hits), [NORTH]);
}

#[test]
fn ties_go_to_the_smaller_key_whatever_the_row_order() {
    let mut index = VectorIndex::new(2);
    for key in [30, 10, 20, 5] {
        index.insert(facts(key, Category::Fact), &[1.0, 0.0]);
    }
    index.remove(5);
    index.insert(facts(1, Category::Fact), &[1.0, 0.0]); // into 5's slot
    let hits = index.search(&query(&[1.0, 0.0], 2, 1.0));
    assert_eq!(keys(&hits), [1, 10]);
    assert!(hits.iter().all(|hit| hit.similarity <= 1.0));
}

/// A deterministic stream of values in -1..1.
fn noise(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

#[test]
fn a_search_split_over_tasks_finds_what_a_full_sort_finds() {
    let dimension = 24;
    let mut next = noise(7);
    let mut index = VectorIndex::new(dimension);
    let mut all = Vec::new();
    for key in 0..(ROWS_PER_TASK as u128 * 3 + 123) {
        let vector = unit(&(0..dimension).map(|_| next()).collect::<Vec<_>>());
        let category = if key % 3 == 0 {
            Category::Plan
        } else {
            Category::Fact
        };
        index.insert(facts(key, category), &vector);
        all.push((key, category, vector));
    }
    let probe = unit(&(0..dimension).map(|_| next()).collect::<Vec<_>>());
    let mut wanted = query(&probe, 50, 0.1);
    wanted.filter.category = Some(Category::Plan);
    let mut expected: Vec<(f32, u128)> = all
        .iter()
        .filter(|(_, category, _)| *category == Category::Plan)
        .map(|(key, _, vector)| (dot(&probe, vector), *key))
        .filter(|(similarity, _)| *similarity >= 0.1)
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    expected.truncate(50);
    let hits = index.search(&wanted);
    assert_eq!(
        keys(&hits),
        expected.iter().map(|(_, key)| *key).collect::<Vec<_>>()
    );
}

fn random_index(
    rows: u128,
    dimension: usize,
    settings: Option<ApproximateSettings>,
) -> VectorIndex {
    let mut next = noise(11);
    let mut index = VectorIndex::new(dimension);
    if let Some(settings) = settings {
        index.enable_approximate(settings);
    }
    for key in 0..rows {
        let vector = unit(&(0..dimension).map(|_| next()).collect::<Vec<_>>());
        let category = if key % 50 == 0 {
            Category::Plan
        } else {
            Category::Fact
        };
        index.insert(facts(key, category), &vector);
    }
    index
}

fn small_graph() -> ApproximateSettings {
    ApproximateSettings {
        min_vectors: 1_000,
        expansion_search: 128,
        ..ApproximateSettings::default()
    }
}

#[test]
fn the_graph_is_built_at_its_size_and_its_hits_carry_exact_similarities() {
    let dimension = 32;
    let exact = random_index(3_000, dimension, None);
    let approximate = random_index(3_000, dimension, Some(small_graph()));
    assert!(!exact.is_approximate());
    assert!(approximate.is_approximate());
    let mut next = noise(99);
    let mut found = 0;
    for _ in 0..50 {
        let probe = unit(&(0..dimension).map(|_| next()).collect::<Vec<_>>());
        let truth = keys(&exact.search(&query(&probe, 10, -1.0)));
        let hits = approximate.search(&query(&probe, 10, -1.0));
        assert_eq!(hits.len(), 10);
        for hit in &hits {
            let expected = exact
                .search_exact(&query(&probe, 3_000, -1.0))
                .into_iter()
                .find(|candidate| candidate.key == hit.key)
                .expect("a hit the exact index holds");
            assert_eq!(hit.similarity, expected.similarity, "re-ranked exactly");
        }
        found += keys(&hits).iter().filter(|key| truth.contains(key)).count();
    }
    let recall = found as f64 / 500.0;
    assert!(recall >= 0.9, "recall@10 {recall}");
}

#[test]
fn a_freed_slot_is_reused_and_the_graph_finds_its_new_vector() {
    let dimension = 32;
    let mut index = random_index(2_000, dimension, Some(small_graph()));
    assert!(index.remove(7));
    assert!(!index.remove(7));
    let mut next = noise(5);
    let fresh = unit(&(0..dimension).map(|_| next()).collect::<Vec<_>>());
    index.insert(facts(5_000, Category::Fact), &fresh);
    assert_eq!(index.len(), 2_000);
    assert_eq!(index.facts.len(), 2_000, "the freed slot was reused");
    let hits = index.search(&query(&fresh, 10, -1.0));
    let fresh_hit = hits
        .iter()
        .find(|hit| hit.key == 5_000)
        .expect("the new vector is found");
    assert!((fresh_hit.similarity - 1.0).abs() < 1e-5);
    assert!(!keys(&hits).contains(&7));
}

#[test]
fn removed_rows_take_no_place_in_the_graphs_answers() {
    let dimension = 32;
    let mut index = random_index(3_000, dimension, Some(small_graph()));
    // Every third row removed: their nodes stay in the graph, for its links, until reused,
    // and a search must walk through them without answering with them.
    let removed: Vec<(u128, Vec<f32>)> = (0..3_000)
        .step_by(3)
        .map(|key| (key, index.row(index.positions[&key]).to_vec()))
        .collect();
    for (key, _) in &removed {
        assert!(index.remove(*key));
    }
    assert!(index.is_approximate());
    let (mut found, mut asked) = (0, 0);
    for (key, vector) in removed.iter().step_by(20) {
        let truth = keys(&index.search_exact(&query(vector, 10, -1.0)));
        let hits = keys(&index.search(&query(vector, 10, -1.0)));
        assert_eq!(hits.len(), 10, "a full answer for the removed row {key}");
        assert!(
            hits.iter().all(|hit| hit % 3 != 0),
            "no removed row in {hits:?}"
        );
        found += hits.iter().filter(|hit| truth.contains(hit)).count();
        asked += 10;
    }
    let recall = found as f64 / asked as f64;
    assert!(recall >= 0.9, "recall@10 {recall}");
}

#[test]
fn the_graphs_memory_put_on_huge_pages_is_its_own_and_keeps_its_answers() {
    let dimension = 32;
    let index = random_index(3_000, dimension, Some(small_graph()));
    let graph = index.approximate.as_ref().expect("a graph");
    let regions = graph.memory_regions();
    // The node table and the table of row addresses hold at least 8 bytes a node each.
    let total: usize = regions.iter().map(|(_, bytes)| bytes).sum();
    assert!(total >= 3_000 * 16, "{regions:x?}");
    let mut sorted = regions.clone();
    sorted.sort_unstable();
    for pair in sorted.windows(2) {
        assert!(pair[0].0 + pair[0].1 <= pair[1].0, "overlap in {sorted:x?}");
    }
    // Each block lies inside one writable mapping of this process.
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let writable: Vec<(usize, usize)> = maps
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with("rw"))
        })
        .filter_map(|line| {
            let (from, to) = line.split_whitespace().next()?.split_once('-')?;
            Some((
                usize::from_str_radix(from, 16).ok()?,
                usize::from_str_radix(to, 16).ok()?,
            ))
        })
        .collect();
    for &(start, bytes) in &regions {
        assert!(bytes > 0);
        assert!(
            writable
                .iter()
                .any(|&(from, to)| from <= start && start + bytes <= to),
            "{start:x}+{bytes} is not in a writable mapping"
        );
    }
    let probes: Vec<Vec<f32>> = (0..20).map(|slot| index.row(slot * 97).to_vec()).collect();
    let before: Vec<_> = probes
        .iter()
        .map(|probe| index.search(&query(probe, 10, -1.0)))
        .collect();
    super::huge_pages::collapse("approximate index", regions);
    let after: Vec<_> = probes
        .iter()
        .map(|probe| index.search(&query(probe, 10, -1.0)))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn a_selective_filter_gets_the_exact_answer() {
    let dimension = 32;
    let index = random_index(3_000, dimension, Some(small_graph()));
    let mut next = noise(3);
    let probe = unit(&(0..dimension).map(|_| next()).collect::<Vec<_>>());
    let mut plans = query(&probe, 20, -1.0);
    plans.filter.category = Some(Category::Plan);
    let hits = index.search(&plans);
    assert_eq!(hits, index.search_exact(&plans));
    assert!(hits.len() == 20);
}

#[test]
fn the_graph_goes_when_the_index_shrinks_below_half_its_size() {
    let mut index = random_index(1_200, 16, Some(small_graph()));
    assert!(index.is_approximate());
    for key in 0..701 {
        index.remove(key);
    }
    assert_eq!(index.len(), 499);
    assert!(!index.is_approximate());
}

#[test]
fn an_int8_scan_re_ranks_exactly_and_finds_what_the_exact_scan_finds() {
    let dimension = 48;
    let exact = random_index(ROWS_PER_TASK as u128 * 2 + 77, dimension, None);
    let mut int8 = random_index(ROWS_PER_TASK as u128 * 2 + 77, dimension, None);
    int8.enable_int8();
    // Rows added after enabling are quantized too.
    let mut next = noise(77);
    let late = unit(&(0..dimension).map(|_| next()).collect::<Vec<_>>());
    int8.insert(facts(1 << 40, Category::Fact), &late);
    assert_eq!(keys(&int8.search(&query(&late, 1, -1.0))), [1 << 40]);
    int8.remove(1 << 40);
    let mut found = 0;
    for _ in 0..30 {
        let probe = unit(&(0..dimension).map(|_| next()).collect::<Vec<_>>());
        let truth = exact.search(&query(&probe, 10, -1.0));
        let hits = int8.search(&query(&probe, 10, -1.0));
        for hit in &hits {
            if let Some(same) = truth.iter().find(|t| t.key == hit.key) {
                assert_eq!(same.similarity, hit.similarity, "re-ranked exactly");
            }
        }
        found += keys(&hits)
            .iter()
            .filter(|key| keys(&truth).contains(key))
            .count();
    }
    assert!(found >= 290, "recall@10 {}", found as f64 / 300.0);
}

#[test]
fn every_kind_of_graph_follows_the_buffer_as_it_grows_and_finds_what_the_exact_scan_finds() {
    for (vectors, dimension) in [
        (GraphVectors::SharedBuffer, 24),
        (GraphVectors::Int8Copy, 24),
    ] {
        let settings = ApproximateSettings {
            vectors,
            ..small_graph()
        };
        // Built at 1,000 rows, then grown eightfold: the buffer moves many times.
        let index = random_index(8_000, dimension, Some(settings));
        assert!(index.is_approximate());
        let mut next = noise(11);
        let (mut own_found, mut probes_found, mut asked) = (0, 0, 0);
        for key in (0..8_000).step_by(97) {
            let start = key as usize * dimension;
            let own = index.vectors[start..start + dimension].to_vec();
            let hits = index.search(&query(&own, 10, -1.0));
            own_found += usize::from(hits.first().is_some_and(|hit| hit.key == key));
            let probe = unit(&(0..dimension).map(|_| next()).collect::<Vec<_>>());
            let truth = keys(&index.search_exact(&query(&probe, 10, -1.0)));
            let hits = keys(&index.search(&query(&probe, 10, -1.0)));
            probes_found += hits.iter().filter(|key| truth.contains(key)).count();
            asked += 1;
        }
        assert!(
            own_found >= asked - 2,
            "{vectors:?}: {own_found} of {asked} rows found by their own vector"
        );
        let recall = probes_found as f64 / (asked * 10) as f64;
        assert!(recall >= 0.9, "{vectors:?}: recall@10 {recall}");
    }
}
