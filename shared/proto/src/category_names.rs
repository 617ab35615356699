//! The names of engram categories, as the memory stores them and every client writes them
//! (`fact`, `action`, ...): one table for the services, the CLI and the MCP gateway.

use crate::v1::Category;

/// Every category an engram can have, with its name.
pub const NAMES: [(Category, &str); 6] = [
    (Category::Fact, "fact"),
    (Category::Action, "action"),
    (Category::Observation, "observation"),
    (Category::Plan, "plan"),
    (Category::Episode, "episode"),
    (Category::Procedure, "procedure"),
];

/// The name of `category`; `Unspecified` is a fact (as a store takes it).
pub fn name(category: Category) -> &'static str {
    NAMES
        .iter()
        .find(|(known, _)| *known == category)
        .map_or("fact", |(_, name)| name)
}

/// The category named `name`, if it is one.
pub fn named(name: &str) -> Option<Category> {
    NAMES
        .iter()
        .find(|(_, known)| *known == name)
        .map(|(category, _)| *category)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_round_trips_through_its_name() {
        for (category, given) in NAMES {
            assert_eq!(name(category), given);
            assert_eq!(named(given), Some(category));
        }
        assert_eq!(name(Category::Unspecified), "fact");
        assert_eq!(named("CATEGORY_FACT"), None);
    }
}
