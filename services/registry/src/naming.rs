//! Public tool names: `<skill>_<tool>`, always valid for LLM APIs (`^[a-zA-Z0-9_-]{1,64}$`).

/// Longest public tool name LLM APIs accept.
pub const MAX_PUBLIC_NAME_LEN: usize = 64;

/// Returns the public name of `tool` of `skill`: `<skill>_<tool>` when that is already valid,
/// otherwise a sanitised, shortened form ending in a stable hash of the original pair, so
/// that two different pairs never share a public name by sanitising alone.
pub fn public_tool_name(skill: &str, tool: &str) -> String {
    let plain = format!("{skill}_{tool}");
    if plain.len() <= MAX_PUBLIC_NAME_LEN && plain.bytes().all(is_allowed) {
        return plain;
    }
    disambiguated_tool_name(skill, tool)
}

/// Returns a valid public name for the pair that always ends in a stable hash of it: used
/// when the plain form is invalid, or already taken by a different pair.
pub fn disambiguated_tool_name(skill: &str, tool: &str) -> String {
    let plain = format!("{skill}_{tool}");
    let hash = format!("{:08x}", stable_hash(skill, tool) as u32);
    let sanitised: String = plain
        .chars()
        .map(|c| {
            if c.is_ascii() && is_allowed(c as u8) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let keep = MAX_PUBLIC_NAME_LEN - hash.len() - 1;
    let prefix: String = sanitised.chars().take(keep).collect();
    format!("{prefix}_{hash}")
}

fn is_allowed(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// FNV-1a over `skill`, a separator and `tool`: stable across runs, hosts and versions.
fn stable_hash(skill: &str, tool: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in skill.bytes().chain([0u8]).chain(tool.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        !name.is_empty() && name.len() <= MAX_PUBLIC_NAME_LEN && name.bytes().all(is_allowed)
    }

    #[test]
    fn plain_names_are_skill_underscore_tool() {
        assert_eq!(
            public_tool_name("time", "get_current_time"),
            "time_get_current_time"
        );
    }

    #[test]
    fn dots_slashes_spaces_and_unicode_are_sanitised_with_a_hash() {
        let name = public_tool_name("my.skill", "read/file näme");
        assert!(valid(&name), "{name}");
        assert!(name.starts_with("my_skill_read_file_n"), "{name}");
        assert_ne!(name, public_tool_name("my_skill", "read_file_n_me"));
    }

    #[test]
    fn long_names_are_cut_to_64_and_stay_distinct() {
        let long_tool = "x".repeat(100);
        let a = public_tool_name("skill", &format!("{long_tool}a"));
        let b = public_tool_name("skill", &format!("{long_tool}b"));
        assert!(valid(&a) && valid(&b));
        assert_eq!(a.len(), MAX_PUBLIC_NAME_LEN);
        assert_ne!(a, b);
        assert_eq!(a, public_tool_name("skill", &format!("{long_tool}a")));
    }
}
