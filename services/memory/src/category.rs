//! Engram categories: the proto enum, its stored names (`mimo_proto::category_names`), and
//! the defaults of each request.

use crate::error::MemoryError;
use mimo_proto::v1::Category;

/// Returns the name `category` is stored under; `Unspecified` is stored as a fact.
pub(crate) fn stored_name(category: Category) -> &'static str {
    mimo_proto::category_names::name(category)
}

/// Returns the category stored under `name`, if it is one.
pub(crate) fn from_stored_name(name: &str) -> Option<Category> {
    mimo_proto::category_names::named(name)
}

/// Returns the category a Store request asks for: `Unspecified` means a fact.
pub(crate) fn for_store(value: i32) -> Result<Category, MemoryError> {
    match Category::try_from(value) {
        Ok(Category::Unspecified) => Ok(Category::Fact),
        Ok(category) => Ok(category),
        Err(_) => Err(MemoryError::UnknownCategory(value)),
    }
}

/// Returns the filter a Search request asks for: `Unspecified` means none.
pub(crate) fn for_search(value: i32) -> Result<Option<Category>, MemoryError> {
    match Category::try_from(value) {
        Ok(Category::Unspecified) => Ok(None),
        Ok(category) => Ok(Some(category)),
        Err(_) => Err(MemoryError::UnknownCategory(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_round_trips_through_its_stored_name() {
        for (category, name) in mimo_proto::category_names::NAMES {
            assert_eq!(stored_name(category), name);
            assert_eq!(from_stored_name(name), Some(category));
        }
        assert_eq!(from_stored_name("CATEGORY_FACT"), None);
    }

    #[test]
    fn unspecified_means_fact_on_store_and_no_filter_on_search() {
        assert_eq!(for_store(0).unwrap(), Category::Fact);
        assert_eq!(for_search(0).unwrap(), None);
        assert_eq!(
            for_search(Category::Plan as i32).unwrap(),
            Some(Category::Plan)
        );
        assert!(matches!(
            for_store(42),
            Err(MemoryError::UnknownCategory(42))
        ));
    }
}
