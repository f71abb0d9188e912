//! `pipeline("ner")` / `pipeline("token-classification")`: from each token's logits to the
//! entities of a text, as transformers' `TokenClassificationPipeline.postprocess` makes them
//! (`gather_pre_entities`, `aggregate`, `aggregate_words`, `group_entities`): numpy's float32
//! softmax, the tokens that continue a word, the five aggregation strategies and the grouping of
//! B-/I- tags into entity groups.

use super::numpy;
use crate::error::{Error, Result};

/// transformers' `AggregationStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// One entity per token.
    None,
    /// Adjacent tokens with the same tag make one entity group.
    Simple,
    /// As Simple, the words taking the tag of their first token.
    First,
    /// As Simple, the words taking the tag of their tokens' average scores.
    Average,
    /// As Simple, the words taking the tag of their most confident token.
    Max,
}

impl Aggregation {
    pub const NAMES: [&'static str; 5] = ["none", "simple", "first", "average", "max"];

    /// The strategy of `name` (any case, as `AggregationStrategy[name.upper()]`).
    pub fn parse(name: &str) -> Result<Aggregation> {
        Ok(match name.to_lowercase().as_str() {
            "none" => Aggregation::None,
            "simple" => Aggregation::Simple,
            "first" => Aggregation::First,
            "average" => Aggregation::Average,
            "max" => Aggregation::Max,
            _ => {
                return Err(Error::value(format!(
                    "aggregation_strategy {name:?} is not one of {:?}",
                    Aggregation::NAMES
                )))
            }
        })
    }

    /// Whether tokens are first fused into words (first, average, max).
    pub fn by_words(self) -> bool {
        matches!(self, Aggregation::First | Aggregation::Average | Aggregation::Max)
    }
}

/// One result: a token (`Aggregation::None`: `index` set, `label` is its "entity") or an entity
/// group (the others: `label` is its "entity_group").
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub label: String,
    pub score: f32,
    pub index: Option<usize>,
    pub word: String,
    pub start: usize,
    pub end: usize,
}

/// What the post-processing needs of the tokenizer.
pub struct Vocabulary<'a> {
    /// Whether the tokenizer's model marks tokens that continue a word (a non-empty
    /// `continuing_subword_prefix`, WordPiece's "##"): then a token continues a word when its
    /// text and the text its offsets cover differ in length; otherwise transformers' fallback
    /// heuristic decides (no space before it or at its start).
    pub word_aware: bool,
    pub unk_token_id: Option<u32>,
    /// `convert_ids_to_tokens`.
    pub id_to_token: &'a (dyn Fn(u32) -> String + Sync),
    /// `convert_tokens_to_string`.
    pub tokens_to_string: &'a (dyn Fn(&[String]) -> Result<String> + Sync),
}

/// The encoded text: ids, character offsets and special-tokens mask, one per token.
pub struct Encoded<'a> {
    pub text: &'a str,
    pub ids: &'a [u32],
    pub offsets: &'a [(usize, usize)],
    pub special: &'a [u32],
}

/// How the results are made: the labels (`id2label` in order), the strategy, the labels left out.
pub struct Settings {
    pub labels: Vec<String>,
    pub aggregation: Aggregation,
    pub ignore_labels: Vec<String>,
}

/// A token before aggregation (`gather_pre_entities`'s dicts).
struct Token {
    word: String,
    scores: Vec<f32>,
    start: usize,
    end: usize,
    index: usize,
    is_subword: bool,
}

/// The entities of one text from its tokens' `logits` ([tokens × labels], row-major), and
/// whether the fallback heuristic decided word boundaries for a word-level strategy
/// (transformers warns "Tokenizer does not support real words, using fallback heuristic").
pub fn entities(
    encoded: &Encoded,
    logits: &[f32],
    settings: &Settings,
    vocab: &Vocabulary,
) -> Result<(Vec<Entity>, bool)> {
    let width = settings.labels.len();
    if width == 0 || logits.len() != encoded.ids.len() * width {
        return Err(Error::value(format!(
            "the model gives {} logits for {} tokens, not {} labels per token",
            logits.len(),
            encoded.ids.len(),
            width
        )));
    }
    let (tokens, heuristic) = gather(encoded, logits, width, vocab);
    let warned = heuristic && settings.aggregation.by_words();
    let label = |i: usize| settings.labels[i].clone();
    let words: Vec<Entity> = if settings.aggregation.by_words() {
        fuse_words(&tokens, settings.aggregation, &label, vocab)?
    } else {
        tokens
            .iter()
            .map(|t| {
                let best = numpy::argmax(&t.scores);
                Entity {
                    label: label(best),
                    score: t.scores[best],
                    index: Some(t.index),
                    word: t.word.clone(),
                    start: t.start,
                    end: t.end,
                }
            })
            .collect()
    };
    let results = if settings.aggregation == Aggregation::None {
        words
    } else {
        group_entities(&words, vocab)?
    };
    let kept = results.into_iter().filter(|e| !settings.ignore_labels.contains(&e.label)).collect();
    Ok((kept, warned))
}

/// `gather_pre_entities`: the tokens other than special ones with their scores, offsets and
/// whether each continues a word; and whether the fallback heuristic was used.
fn gather(
    encoded: &Encoded,
    logits: &[f32],
    width: usize,
    vocab: &Vocabulary,
) -> (Vec<Token>, bool) {
    let chars: Vec<char> = encoded.text.chars().collect();
    let slice = |a: usize, b: usize| -> String {
        let (a, b) = (a.min(chars.len()), b.min(chars.len()));
        chars[a..b.max(a)].iter().collect()
    };
    let mut heuristic = false;
    let mut tokens = Vec::new();
    for (index, &id) in encoded.ids.iter().enumerate() {
        if encoded.special[index] != 0 {
            continue;
        }
        let (start, end) = encoded.offsets[index];
        let mut word = (vocab.id_to_token)(id);
        let word_ref = slice(start, end);
        let mut is_subword = if vocab.word_aware {
            word.chars().count() != word_ref.chars().count()
        } else {
            heuristic = true;
            // `" " not in sentence[start - 1 : start + 1]`
            start > 0 && chars.get(start - 1) != Some(&' ') && chars.get(start) != Some(&' ')
        };
        if Some(id) == vocab.unk_token_id {
            word = word_ref;
            is_subword = false;
        }
        let scores = numpy::softmax(&logits[index * width..(index + 1) * width]);
        tokens.push(Token { word, scores, start, end, index, is_subword });
    }
    (tokens, heuristic)
}

/// `aggregate_words`: tokens fused into words (a word ends before a token that does not
/// continue one), each word tagged by `strategy` (`aggregate_word`).
fn fuse_words(
    tokens: &[Token],
    strategy: Aggregation,
    label: &dyn Fn(usize) -> String,
    vocab: &Vocabulary,
) -> Result<Vec<Entity>> {
    let mut groups: Vec<&[Token]> = Vec::new();
    let mut first = 0;
    for i in 1..=tokens.len() {
        if i == tokens.len() || !tokens[i].is_subword {
            if i > first {
                groups.push(&tokens[first..i]);
            }
            first = i;
        }
    }
    groups
        .into_iter()
        .map(|group| {
            let words: Vec<String> = group.iter().map(|t| t.word.clone()).collect();
            let (best, score) = match strategy {
                Aggregation::First => {
                    let best = numpy::argmax(&group[0].scores);
                    (best, group[0].scores[best])
                }
                Aggregation::Max => {
                    // `max(entities, key=lambda e: e["scores"].max())`: the first most confident.
                    let top = |t: &Token| t.scores[numpy::argmax(&t.scores)];
                    let mut chosen = &group[0];
                    for t in &group[1..] {
                        if top(t) > top(chosen) {
                            chosen = t;
                        }
                    }
                    let best = numpy::argmax(&chosen.scores);
                    (best, chosen.scores[best])
                }
                Aggregation::Average => {
                    let rows: Vec<&[f32]> = group.iter().map(|t| t.scores.as_slice()).collect();
                    let average = numpy::nanmean_rows(&rows);
                    let best = numpy::argmax(&average);
                    (best, average[best])
                }
                Aggregation::None | Aggregation::Simple => {
                    unreachable!("NONE and SIMPLE strategies are invalid for word aggregation")
                }
            };
            Ok(Entity {
                label: label(best),
                score,
                index: None,
                word: (vocab.tokens_to_string)(&words)?,
                start: group[0].start,
                end: group[group.len() - 1].end,
            })
        })
        .collect()
}

/// `get_tag`: ("B", tag) for "B-tag", ("I", tag) for "I-tag" and ("I", label) for the others.
fn tag(label: &str) -> (&str, &str) {
    if let Some(tag) = label.strip_prefix("B-") {
        ("B", tag)
    } else if let Some(tag) = label.strip_prefix("I-") {
        ("I", tag)
    } else {
        ("I", label)
    }
}

/// `group_entities`: adjacent entities with the same tag make one group, except that a "B-"
/// starts a new one.
fn group_entities(entities: &[Entity], vocab: &Vocabulary) -> Result<Vec<Entity>> {
    let mut groups = Vec::new();
    let mut first = 0;
    for i in 1..=entities.len() {
        let ends = i == entities.len() || {
            let (bi, tag_now) = tag(&entities[i].label);
            let (_, tag_before) = tag(&entities[i - 1].label);
            !(tag_now == tag_before && bi != "B")
        };
        if ends && i > first {
            groups.push(group_sub_entities(&entities[first..i], vocab)?);
            first = i;
        }
    }
    Ok(groups)
}

/// `group_sub_entities`: the group's tag (its first label after the first "-"), mean score,
/// text and span.
fn group_sub_entities(group: &[Entity], vocab: &Vocabulary) -> Result<Entity> {
    let label = &group[0].label;
    let tag = label.split_once('-').map_or(label.as_str(), |(_, tag)| tag);
    let scores: Vec<f32> = group.iter().map(|e| e.score).collect();
    let words: Vec<String> = group.iter().map(|e| e.word.clone()).collect();
    Ok(Entity {
        label: tag.to_string(),
        score: numpy::nanmean(&scores),
        index: None,
        word: (vocab.tokens_to_string)(&words)?,
        start: group[0].start,
        end: group[group.len() - 1].end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WordPiece-like vocabulary: "##" marks continuations; words join with spaces.
    fn wordpiece() -> (Vec<&'static str>, impl Fn(&[String]) -> Result<String>) {
        let tokens = vec!["[CLS]", "[SEP]", "[UNK]", "john", "smith", "lives", "in", "new", "york"];
        let join = |words: &[String]| -> Result<String> { Ok(words.join(" ").replace(" ##", "")) };
        (tokens, join)
    }

    fn labels() -> Vec<String> {
        ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"].map(String::from).to_vec()
    }

    /// Logits that make label `l` the clear winner of a token.
    fn logits_for(tags: &[usize]) -> Vec<f32> {
        tags.iter().flat_map(|&l| (0..5).map(move |j| if j == l { 4.0 } else { 0.0 })).collect()
    }

    fn run(
        text: &str,
        ids: &[u32],
        offsets: &[(usize, usize)],
        words: &[&str],
        tags: &[usize],
        aggregation: Aggregation,
    ) -> Vec<Entity> {
        let (_, join) = wordpiece();
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let id_to_token = move |id: u32| words[id as usize].clone();
        let tokens_to_string = move |w: &[String]| join(w);
        let vocab = Vocabulary {
            word_aware: true,
            unk_token_id: Some(2),
            id_to_token: &id_to_token,
            tokens_to_string: &tokens_to_string,
        };
        let special: Vec<u32> = ids.iter().map(|&id| u32::from(id < 2)).collect();
        let encoded = Encoded { text, ids, offsets, special: &special };
        let settings = Settings { labels: labels(), aggregation, ignore_labels: vec!["O".into()] };
        entities(&encoded, &logits_for(tags), &settings, &vocab).unwrap().0
    }

    #[test]
    fn simple_groups_b_and_i_tags_and_drops_o() {
        // [CLS] john smith lives in new york [SEP]
        let text = "john smith lives in new york";
        let ids = [0, 3, 4, 5, 6, 7, 8, 1];
        let offsets = [(0, 0), (0, 4), (5, 10), (11, 16), (17, 19), (20, 23), (24, 28), (0, 0)];
        let words = ["[CLS]", "[SEP]", "[UNK]", "john", "smith", "lives", "in", "new", "york"];
        let tags = [0, 1, 2, 0, 0, 3, 4, 0];
        let none = run(text, &ids, &offsets, &words, &tags, Aggregation::None);
        assert_eq!(none.len(), 4);
        assert_eq!((none[0].label.as_str(), none[0].index), ("B-PER", Some(1)));
        let simple = run(text, &ids, &offsets, &words, &tags, Aggregation::Simple);
        let got: Vec<(&str, &str, usize, usize)> =
            simple.iter().map(|e| (e.label.as_str(), e.word.as_str(), e.start, e.end)).collect();
        assert_eq!(got, vec![("PER", "john smith", 0, 10), ("LOC", "new york", 20, 28)]);
        // Softmax of [4, 0, 0, 0, 0] in float32.
        let p = 1.0 / (1.0 + 4.0 * numpy::exp(-4.0));
        assert!((simple[0].score - p).abs() < 1e-7);
    }

    #[test]
    fn a_second_b_tag_starts_a_new_group() {
        let text = "john smith";
        let ids = [0, 3, 4, 1];
        let offsets = [(0, 0), (0, 4), (5, 10), (0, 0)];
        let words = ["[CLS]", "[SEP]", "[UNK]", "john", "smith"];
        let simple = run(text, &ids, &offsets, &words, &[0, 1, 1, 0], Aggregation::Simple);
        assert_eq!(simple.len(), 2);
    }

    #[test]
    fn word_strategies_fuse_subwords() {
        // "newyork" → new ##york: one word; its first token says B-LOC, its second B-PER.
        let text = "newyork";
        let ids = [0, 3, 4, 1];
        let offsets = [(0, 0), (0, 3), (3, 7), (0, 0)];
        let words = ["[CLS]", "[SEP]", "[UNK]", "new", "##york"];
        let first = run(text, &ids, &offsets, &words, &[0, 3, 1, 0], Aggregation::First);
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].label.as_str(), first[0].word.as_str()), ("LOC", "newyork"));
        assert_eq!((first[0].start, first[0].end), (0, 7));
        let simple = run(text, &ids, &offsets, &words, &[0, 3, 1, 0], Aggregation::Simple);
        assert_eq!(simple.len(), 2);
    }

    #[test]
    fn unknown_tokens_take_the_text() {
        let text = "john ☃";
        let ids = [0, 3, 2, 1];
        let offsets = [(0, 0), (0, 4), (5, 6), (0, 0)];
        let words = ["[CLS]", "[SEP]", "[UNK]", "john"];
        let none = run(text, &ids, &offsets, &words, &[0, 1, 2, 0], Aggregation::None);
        assert_eq!(none[1].word, "☃");
    }

    #[test]
    fn strategies_parse_in_any_case_and_bad_names_are_named() {
        assert_eq!(Aggregation::parse("FIRST").unwrap(), Aggregation::First);
        let err = Aggregation::parse("longest").unwrap_err().to_string();
        assert!(err.contains("\"longest\"") && err.contains("average"), "{err}");
    }

    #[test]
    fn tags_without_prefix_continue() {
        assert_eq!(tag("B-PER"), ("B", "PER"));
        assert_eq!(tag("I-PER"), ("I", "PER"));
        assert_eq!(tag("PER"), ("I", "PER"));
    }
}
