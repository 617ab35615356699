//! Text normalisation for the built-in embedder: words, stop words and a light stemmer.

/// Function words that say little about what a text means; removed before hashing.
#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    "a", "about", "above", "across", "after", "again", "against", "all", "almost", "along", "also",
    "although", "always", "am", "among", "an", "and", "any", "are", "around", "as", "at", "be",
    "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could",
    "d", "did", "do", "does", "doing", "down", "during", "each", "either", "else", "even", "ever",
    "every", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here",
    "hers", "herself", "him", "himself", "his", "how", "however", "i", "if", "in", "into", "is",
    "it", "its", "itself", "just", "ll", "m", "may", "me", "might", "more", "most", "much", "must",
    "my", "myself", "neither", "no", "nor", "not", "now", "of", "off", "often", "on", "once",
    "only", "or", "other", "others", "otherwise", "our", "ours", "ourselves", "out", "over", "per",
    "quite", "rather", "re", "s", "shall", "she", "should", "since", "so", "some", "such", "t",
    "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these",
    "they", "this", "those", "though", "through", "thus", "to", "too", "under", "until", "up",
    "upon", "us", "ve", "very", "via", "was", "we", "were", "what", "whatever", "when", "whenever",
    "where", "whereas", "whether", "which", "while", "who", "whom", "whose", "why", "will", "with",
    "within", "without", "would", "yet", "you", "your", "yours", "yourself",
];

/// Returns the lowercase alphanumeric words of `text`, in order.
pub(crate) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|character: char| !character.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
}

/// Returns whether `word` (lowercase) is a stop word.
pub(crate) fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// Returns `word` (lowercase) with common English inflections removed, so that "planets",
/// "planet" and "cooked", "cooking", "cook" share a stem. Short words are left alone.
pub(crate) fn stem(word: &str) -> String {
    let mut stem = word.to_string();
    if !stem
        .chars()
        .all(|character| character.is_ascii_alphabetic())
        || stem.len() <= 3
    {
        return stem;
    }
    if let Some(base) = stem.strip_suffix("ies").filter(|base| base.len() >= 2) {
        stem = format!("{base}y");
    } else if let Some(base) = stem.strip_suffix("sses") {
        stem = format!("{base}ss");
    } else if stem.ends_with('s')
        && !stem.ends_with("ss")
        && !stem.ends_with("us")
        && !stem.ends_with("is")
    {
        stem.pop();
    }
    for suffix in ["ing", "ed", "ly"] {
        if let Some(base) = stem.strip_suffix(suffix).filter(|base| base.len() >= 3) {
            stem = base.to_string();
            undouble_final_consonant(&mut stem);
            break;
        }
    }
    if stem.len() > 4 && stem.ends_with('e') {
        stem.pop();
    }
    stem
}

/// "runn" -> "run", "stopp" -> "stop"; keeps "ll", "ss" and "zz", which English doubles at rest.
fn undouble_final_consonant(stem: &mut String) {
    let bytes = stem.as_bytes();
    let length = bytes.len();
    if length >= 3
        && bytes[length - 1] == bytes[length - 2]
        && !b"aeiouylsz".contains(&bytes[length - 1])
    {
        stem.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(is_stop_word("the") && is_stop_word("with") && !is_stop_word("planet"));
    }

    #[test]
    fn words_are_lowercase_alphanumeric_runs() {
        let found: Vec<String> = words("Saturn's rings, 42.195 km!").collect();
        assert_eq!(found, ["saturn", "s", "rings", "42", "195", "km"]);
    }

    #[test]
    fn inflections_share_a_stem() {
        for (left, right) in [
            ("planets", "planet"),
            ("cooking", "cooked"),
            ("cooked", "cook"),
            ("running", "run"),
            ("stories", "story"),
            ("caramelized", "caramelize"),
            ("slowly", "slow"),
            ("invented", "invent"),
        ] {
            assert_eq!(stem(left), stem(right), "{left} / {right}");
        }
        assert_eq!(stem("glass"), "glass");
        assert_eq!(stem("virus"), "virus");
        assert_eq!(stem("1989"), "1989");
    }
}
