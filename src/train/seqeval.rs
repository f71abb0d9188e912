//! Entity-level scores of sequence labelling (NER), as the seqeval package computes them for
//! `evaluate.load("seqeval")`: entities are read from IOB-style tags either as conlleval does
//! (seqeval's default mode, `sequence_labeling.get_entities`) or by a tagging scheme's rules
//! (`mode="strict"`, `seqeval.scheme`); precision, recall and F1 per entity type and over all
//! of them (micro average), and the tag accuracy.

use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashSet};

/// A tagging scheme of strict mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Iob1,
    Iob2,
    Ioe1,
    Ioe2,
    Iobes,
    Bilou,
}

impl Scheme {
    pub fn parse(name: &str) -> Result<Scheme> {
        Ok(match name {
            "IOB1" => Scheme::Iob1,
            "IOB2" => Scheme::Iob2,
            "IOE1" => Scheme::Ioe1,
            "IOE2" => Scheme::Ioe2,
            "IOBES" => Scheme::Iobes,
            "BILOU" => Scheme::Bilou,
            other => {
                return Err(Error::value(format!(
                    "Scheme should be one of [IOB1, IOB2, IOE1, IOE2, IOBES, BILOU], got {other}"
                )))
            }
        })
    }

    /// The prefixes the scheme allows.
    fn allowed(self) -> &'static str {
        match self {
            Scheme::Iob1 | Scheme::Iob2 => "IOB",
            Scheme::Ioe1 | Scheme::Ioe2 => "IOE",
            Scheme::Iobes => "IOBES",
            Scheme::Bilou => "BILOU",
        }
    }

    /// (previous prefixes, current prefixes, tag condition) that start, continue and end an
    /// entity (`seqeval.scheme`'s pattern tables; "*" is any prefix).
    fn patterns(self) -> [&'static [Pattern]; 3] {
        use Types::{Any, Diff, Same as Eq};
        match self {
            Scheme::Iob1 => [
                &[
                    ("O", "I", Any),
                    ("I", "I", Diff),
                    ("B", "I", Any),
                    ("I", "B", Eq),
                    ("B", "B", Eq),
                ],
                &[("B", "I", Eq), ("I", "I", Eq)],
                &[
                    ("I", "I", Diff),
                    ("I", "O", Any),
                    ("I", "B", Any),
                    ("B", "O", Any),
                    ("B", "I", Diff),
                    ("B", "B", Eq),
                ],
            ],
            Scheme::Ioe1 => [
                &[("O", "I", Any), ("I", "I", Diff), ("E", "I", Any), ("E", "E", Eq)],
                &[("I", "I", Eq), ("I", "E", Eq)],
                &[
                    ("I", "I", Diff),
                    ("I", "O", Any),
                    ("I", "E", Diff),
                    ("E", "I", Eq),
                    ("E", "E", Eq),
                ],
            ],
            Scheme::Iob2 => [
                &[("*", "B", Any)],
                &[("B", "I", Eq), ("I", "I", Eq)],
                &[
                    ("I", "O", Any),
                    ("I", "I", Diff),
                    ("I", "B", Any),
                    ("B", "O", Any),
                    ("B", "I", Diff),
                    ("B", "B", Any),
                ],
            ],
            Scheme::Ioe2 => [
                &[
                    ("O", "I", Any),
                    ("O", "E", Any),
                    ("E", "I", Any),
                    ("E", "E", Any),
                    ("I", "I", Diff),
                    ("I", "E", Diff),
                ],
                &[("I", "E", Eq), ("I", "I", Eq)],
                &[("E", "*", Any)],
            ],
            Scheme::Iobes => [
                &[("*", "B", Any), ("*", "S", Any)],
                &[("B", "I", Eq), ("B", "E", Eq), ("I", "I", Eq), ("I", "E", Eq)],
                &[("S", "*", Any), ("E", "*", Any)],
            ],
            Scheme::Bilou => [
                &[("*", "B", Any), ("*", "U", Any)],
                &[("B", "I", Eq), ("B", "L", Eq), ("I", "I", Eq), ("I", "L", Eq)],
                &[("U", "*", Any), ("L", "*", Any)],
            ],
        }
    }
}

/// What a pattern asks of the entity types of the previous token and this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Types {
    Same,
    Diff,
    Any,
}

type Pattern = (&'static str, &'static str, Types);

/// A tag split into its prefix character and entity type, in strict mode's way
/// (`seqeval.scheme.Token`).
struct Token<'a> {
    prefix: char,
    kind: &'a str,
}

impl<'a> Token<'a> {
    fn new(tag: &'a str, suffix: bool) -> Result<Token<'a>> {
        let prefix = if suffix { tag.chars().next_back() } else { tag.chars().next() };
        let prefix = prefix.filter(|c| "IOBESUL".contains(*c)).ok_or_else(|| {
            Error::value(format!("{tag:?} is not a tag of a tagging scheme (I, O, B, E, S, U, L)"))
        })?;
        let rest =
            if suffix { &tag[..tag.len() - prefix.len_utf8()] } else { &tag[prefix.len_utf8()..] };
        let kind = rest.trim_matches('-');
        Ok(Token { prefix, kind: if kind.is_empty() { "_" } else { kind } })
    }

    fn matches(&self, prev: &Token, patterns: &[Pattern]) -> bool {
        patterns.iter().any(|&(before, now, same)| {
            (before == "*" || before.contains(prev.prefix))
                && (now == "*" || now.contains(self.prefix))
                && match same {
                    Types::Any => true,
                    Types::Same => prev.kind == self.kind,
                    Types::Diff => prev.kind != self.kind,
                }
        })
    }
}

/// An entity: (sentence, type, start, end).
type Entity<'a> = (usize, &'a str, usize, usize);

/// Strict mode's entities of one sentence (`seqeval.scheme.Tokens.entities`).
fn strict_entities<'a>(
    sentence: usize,
    tags: &'a [String],
    scheme: Scheme,
    suffix: bool,
) -> Result<Vec<Entity<'a>>> {
    let mut tokens = tags.iter().map(|t| Token::new(t, suffix)).collect::<Result<Vec<_>>>()?;
    tokens.push(Token { prefix: 'O', kind: "_" });
    let [start, inside, end] = scheme.patterns();
    let mut entities = Vec::new();
    let mut i = 0;
    let mut prev_token = &Token { prefix: 'O', kind: "_" };
    while i < tokens.len() {
        let token = &tokens[i];
        if !scheme.allowed().contains(token.prefix) {
            return Err(Error::value(format!(
                "Invalid token is found: {}. Allowed prefixes are: {}.",
                tags.get(i).map_or("O", String::as_str),
                scheme.allowed().chars().map(String::from).collect::<Vec<_>>().join("|")
            )));
        }
        if token.matches(prev_token, start) {
            // The entity runs while tokens continue it; it counts if the token after it ends it.
            let mut last = token;
            let mut stop = tokens.len() - 2;
            for (j, next) in tokens.iter().enumerate().skip(i + 1) {
                if next.matches(last, inside) {
                    last = next;
                } else {
                    stop = j;
                    break;
                }
            }
            if tokens[stop].matches(&tokens[stop - 1], end) {
                entities.push((sentence, token.kind, i, stop));
            }
            i = stop;
        } else {
            i += 1;
        }
        prev_token = &tokens[i - 1];
    }
    Ok(entities)
}

fn all_strict_entities(
    sentences: &[Vec<String>],
    scheme: Scheme,
    suffix: bool,
) -> Result<Vec<Entity<'_>>> {
    let mut all = Vec::new();
    for (i, sentence) in sentences.iter().enumerate() {
        all.extend(strict_entities(i, sentence, scheme, suffix)?);
    }
    Ok(all)
}

/// Default mode's entities of all sentences, read as one sequence with an "O" after each
/// sentence (`sequence_labeling.get_entities`, conlleval's chunk rules).
fn default_entities(sentences: &[Vec<String>], suffix: bool) -> Result<Vec<Entity<'_>>> {
    let flat = sentences.iter().flat_map(|s| s.iter().map(String::as_str).chain(["O"]));
    let mut chunks = Vec::new();
    let (mut prev_tag, mut prev_kind, mut begin) = ('O', "", 0);
    for (i, chunk) in flat.chain(["O"]).enumerate() {
        let tag = if suffix { chunk.chars().next_back() } else { chunk.chars().next() }
            .ok_or_else(|| Error::value("an empty string is not a tag"))?;
        let kind = if suffix {
            let rest = &chunk[..chunk.len() - tag.len_utf8()];
            rest.rsplit_once('-').map_or(rest, |(kind, _)| kind)
        } else {
            let rest = &chunk[tag.len_utf8()..];
            rest.split_once('-').map_or(rest, |(_, kind)| kind)
        };
        let kind = if kind.is_empty() { "_" } else { kind };
        if chunk_ends(prev_tag, tag, prev_kind, kind) {
            chunks.push((0, prev_kind, begin, i - 1));
        }
        if chunk_starts(prev_tag, tag, prev_kind, kind) {
            begin = i;
        }
        (prev_tag, prev_kind) = (tag, kind);
    }
    Ok(chunks)
}

/// conlleval's end of a chunk between the previous tag and this one.
fn chunk_ends(prev: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(prev, 'E' | 'S')
        || (matches!(prev, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev != 'O' && prev != '.' && prev_kind != kind)
}

/// conlleval's start of a chunk at this tag.
fn chunk_starts(prev: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_kind != kind)
}

/// Precision, recall, F1 and support of one entity type, or of all (micro average).
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub number: usize,
}

impl Scores {
    /// `_precision_recall_fscore_support` with beta 1: `zero_division` where a ratio has no
    /// denominator; F1 0 where precision and recall are both 0.
    fn new(correct: usize, predicted: usize, actual: usize, zero_division: f64) -> Scores {
        let ratio = |n: usize, d: usize| if d == 0 { zero_division } else { n as f64 / d as f64 };
        let (precision, recall) = (ratio(correct, predicted), ratio(correct, actual));
        let denominator = precision + recall;
        let denominator = if denominator == 0.0 { 1.0 } else { denominator };
        Scores { precision, recall, f1: 2.0 * precision * recall / denominator, number: actual }
    }
}

/// What `evaluate.load("seqeval").compute` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Per entity type, in sorted order.
    pub types: Vec<(String, Scores)>,
    pub overall: Scores,
    pub accuracy: f64,
}

/// seqeval's `classification_report` (micro average) and `accuracy_score` of `predictions`
/// against `references` (sentences of tags of the same lengths); `strict` is `mode="strict"`
/// with `scheme` (None: detected from the references as seqeval does).
pub fn seqeval(
    predictions: &[Vec<String>],
    references: &[Vec<String>],
    suffix: bool,
    strict: bool,
    scheme: Option<Scheme>,
    zero_division: f64,
) -> Result<Report> {
    let lengths = |s: &[Vec<String>]| s.iter().map(Vec::len).collect::<Vec<_>>();
    if lengths(predictions) != lengths(references) {
        return Err(Error::value(format!(
            "Found input variables with inconsistent numbers of samples:\n{:?}\n{:?}",
            lengths(references),
            lengths(predictions)
        )));
    }
    let (actual, predicted) = if strict {
        let scheme = match scheme {
            Some(scheme) => scheme,
            None => detect(references, suffix)?,
        };
        let all = |sentences| all_strict_entities(sentences, scheme, suffix);
        (all(references)?, all(predictions)?)
    } else {
        (default_entities(references, suffix)?, default_entities(predictions, suffix)?)
    };
    let actual: HashSet<Entity> = actual.into_iter().collect();
    let predicted: HashSet<Entity> = predicted.into_iter().collect();
    // (correct, predicted, actual) per type.
    let mut counts: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for entity in &predicted {
        let count = counts.entry(entity.1).or_default();
        count.1 += 1;
        count.0 += usize::from(actual.contains(entity));
    }
    for entity in &actual {
        counts.entry(entity.1).or_default().2 += 1;
    }
    let total = counts.values().fold((0, 0, 0), |t, c| (t.0 + c.0, t.1 + c.1, t.2 + c.2));
    let tags: usize = references.iter().map(Vec::len).sum();
    if tags == 0 {
        return Err(Error::value("seqeval needs at least one tag (the accuracy divides by 0)"));
    }
    let same = predictions.iter().flatten().zip(references.iter().flatten());
    Ok(Report {
        types: counts
            .into_iter()
            .map(|(kind, (c, p, a))| (kind.to_string(), Scores::new(c, p, a, zero_division)))
            .collect(),
        overall: Scores::new(total.0, total.1, total.2, zero_division),
        accuracy: same.filter(|(p, r)| p == r).count() as f64 / tags as f64,
    })
}

/// `seqeval.scheme.auto_detect`: IOB2, IOE2, IOBES or BILOU from the prefixes the tags use.
fn detect(sentences: &[Vec<String>], suffix: bool) -> Result<Scheme> {
    let mut used: Vec<char> = Vec::new();
    for tag in sentences.iter().flatten() {
        let token = Token::new(tag, suffix)
            .map_err(|_| Error::value(format!("This scheme is not supported: {tag}")))?;
        if !used.contains(&token.prefix) {
            used.push(token.prefix);
        }
    }
    let within = |letters: &str, needed: &str| {
        used.iter().all(|c| letters.contains(*c)) && needed.chars().all(|c| used.contains(&c))
    };
    // Each scheme: the prefixes it may use and those it must (seqeval's allowed sets).
    if within("IOB", "B") {
        Ok(Scheme::Iob2)
    } else if within("IOE", "E") {
        Ok(Scheme::Ioe2)
    } else if within("IOBES", "") && iobes_allowed(&used) {
        Ok(Scheme::Iobes)
    } else if within("IOBLU", "") && bilou_allowed(&used) {
        Ok(Scheme::Bilou)
    } else {
        let mut used: Vec<String> = used.iter().map(char::to_string).collect();
        used.sort();
        Err(Error::value(format!("This scheme is not supported: {{{}}}", used.join(", "))))
    }
}

/// seqeval's IOBES sets: with B and E, or S alone, or B E S with O or I.
fn iobes_allowed(used: &[char]) -> bool {
    let has = |c| used.contains(&c);
    (has('B') && has('E')) || (used == ['S'])
}

/// seqeval's BILOU sets: with B and L, or U alone.
fn bilou_allowed(used: &[char]) -> bool {
    let has = |c| used.contains(&c);
    (has('B') && has('L')) || (used == ['U'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentences(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter().map(|row| row.iter().map(|t| t.to_string()).collect()).collect()
    }

    #[test]
    fn the_seqeval_readme_example() {
        // seqeval's README: MISC predicted one token early, PER right.
        let truth = sentences(&[
            &["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"],
            &["B-PER", "I-PER", "O"],
        ]);
        let guess = sentences(&[
            &["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"],
            &["B-PER", "I-PER", "O"],
        ]);
        let report = seqeval(&guess, &truth, false, false, None, 0.0).unwrap();
        assert_eq!(report.types[0].0, "MISC");
        assert_eq!(report.types[0].1, Scores { precision: 0.0, recall: 0.0, f1: 0.0, number: 1 });
        assert_eq!(report.types[1].1, Scores { precision: 1.0, recall: 1.0, f1: 1.0, number: 1 });
        assert_eq!(report.overall.f1, 0.5);
        assert_eq!(report.accuracy, 0.8);
    }

    #[test]
    fn strict_mode_needs_the_scheme_s_starts() {
        // An entity opened by I- counts in default mode, not in strict IOB2.
        let truth = sentences(&[&["I-PER", "I-PER", "O", "B-LOC"]]);
        let default = seqeval(&truth, &truth, false, false, None, 0.0).unwrap();
        assert_eq!(default.overall.number, 2);
        let strict = seqeval(&truth, &truth, false, true, Some(Scheme::Iob2), 0.0).unwrap();
        assert_eq!(strict.overall.number, 1);
        let err = seqeval(&truth, &truth, false, true, Some(Scheme::Ioe2), 0.0).unwrap_err();
        assert!(err.to_string().contains("Invalid token is found: B-LOC"), "{err}");
    }
}
