//! Unit tests of the vector index.

use super::*;

fn unit(values: &[f32]) -> Vec<f32> {
    let norm = values.iter().map(|value| value * value).sum::<f32>().sqrt();
    values.iter().map(|value| value / norm).collect()
}

fn ids(hits: &[IndexHit]) -> Vec<&str> {
    hits.iter().map(|hit| hit.id.as_str()).collect()
}

fn sample() -> VectorIndex {
    let mut index = VectorIndex::new(2);
    index.insert("east".into(), Category::Fact, &unit(&[1.0, 0.0]));
    index.insert("north-east".into(), Category::Plan, &unit(&[1.0, 1.0]));
    index.insert("north".into(), Category::Fact, &unit(&[0.0, 1.0]));
    index.insert("west".into(), Category::Fact, &unit(&[-1.0, 0.0]));
    index
}

#[test]
fn search_returns_the_best_first_within_the_limit() {
    let index = sample();
    let hits = index.search(&unit(&[1.0, 0.2]), 3, -1.0, None);
    assert_eq!(ids(&hits), ["east", "north-east", "north"]);
    assert!(hits
        .windows(2)
        .all(|pair| pair[0].similarity >= pair[1].similarity));
    assert_eq!(
        ids(&index.search(&unit(&[1.0, 0.2]), 1, -1.0, None)),
        ["east"]
    );
    assert_eq!(index.search(&unit(&[-1.0, 0.0]), 10, -1.0, None).len(), 4);
}

#[test]
fn search_applies_min_similarity_and_category() {
    let index = sample();
    let hits = index.search(&unit(&[1.0, 0.2]), 10, 0.5, None);
    assert_eq!(ids(&hits), ["east", "north-east"]);
    let facts = index.search(&unit(&[1.0, 1.0]), 10, -1.0, Some(Category::Fact));
    assert_eq!(ids(&facts), ["east", "north", "west"]);
    let plans = index.search(&unit(&[-1.0, 0.0]), 10, -1.0, Some(Category::Plan));
    assert_eq!(ids(&plans), ["north-east"]);
}

#[test]
fn remove_moves_the_last_vector_into_the_gap() {
    let mut index = sample();
    assert!(index.remove("east"));
    assert!(!index.remove("east"));
    assert_eq!(index.len(), 3);
    // "west" was last and now sits in "east"'s row; it must still score as itself.
    let hits = index.search(&unit(&[-1.0, 0.0]), 1, -1.0, None);
    assert_eq!(ids(&hits), ["west"]);
    assert!((hits[0].similarity - 1.0).abs() < 1e-6);
    assert!(index.remove("west"));
    assert!(index.remove("north"));
    assert!(index.remove("north-east"));
    assert_eq!(index.len(), 0);
    assert!(index.search(&unit(&[1.0, 0.0]), 5, -1.0, None).is_empty());
}

#[test]
fn insert_of_a_known_id_replaces_its_vector() {
    let mut index = sample();
    index.insert("west".into(), Category::Fact, &unit(&[1.0, 0.0]));
    assert_eq!(index.len(), 4);
    let hits = index.search(&unit(&[-1.0, 0.0]), 1, -1.0, None);
    assert_eq!(ids(&hits), ["north"]);
}

#[test]
fn ties_keep_the_earlier_row_and_similarity_stays_within_bounds() {
    let mut index = VectorIndex::new(2);
    for id in ["first", "second", "third"] {
        index.insert(id.into(), Category::Fact, &[1.0, 0.0]);
    }
    let hits = index.search(&[1.0, 0.0], 2, 1.0, None);
    assert_eq!(ids(&hits), ["first", "second"]);
    assert!(hits.iter().all(|hit| hit.similarity <= 1.0));
}
