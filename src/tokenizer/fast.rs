//! The tokens of one sequence without the bookkeeping of tokenizers' `NormalizedString` and
//! `PreTokenizedString` (alignments, offsets, splits), which costs most of the time on short texts.
//!
//! It covers the two pre-tokenization pipelines of the BERT and RoBERTa families, read from the
//! built tokenizer: `BertNormalizer` + `BertPreTokenizer` (normalizers/bert.rs,
//! pre_tokenizers/bert.rs) and `ByteLevel` with its regex (pre_tokenizers/byte_level.rs). The
//! words go to the tokenizer's own model. For every text it accepts, `ids(text)` gives the ids
//! `Tokenizer::encode_fast(text, false)` gives; the tests hold it to that on every kind of
//! character. Texts it does not cover (empty ones, those holding an added token) are left to
//! the full pipeline.

use crate::error::{Error, Result};
use ahash::AHashMap;
use aho_corasick::AhoCorasick;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::utils::SysRegex;
use tokenizers::Model;
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

enum Splitter {
    Bert { clean_text: bool, chinese_chars: bool, strip_accents: bool, lowercase: bool },
    ByteLevel { add_prefix_space: bool, classes: ByteLevelClasses, byte_chars: Box<[char; 256]> },
}

/// What the GPT-2 regex tells apart: `\p{L}`, `\p{N}`, `\s` and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Letter,
    Number,
    Space,
    Other,
}

/// The classes of characters by the regex engine of the tokenizers crate itself (oniguruma),
/// so that they follow its Unicode tables; ASCII is known without asking.
struct ByteLevelClasses {
    letter: SysRegex,
    number: SysRegex,
    space: SysRegex,
}

impl ByteLevelClasses {
    fn new() -> Result<ByteLevelClasses> {
        let regex = |pattern: &str| {
            SysRegex::new(pattern).map_err(|e| Error::Other(format!("regex {pattern}: {e}")))
        };
        Ok(ByteLevelClasses {
            letter: regex(r"\A\p{L}\z")?,
            number: regex(r"\A\p{N}\z")?,
            space: regex(r"\A\s\z")?,
        })
    }

    /// The class of `c`: ASCII by table, the rest by the regex engine, remembered in `known`.
    fn of(&self, c: char, known: &mut AHashMap<char, Class>) -> Class {
        match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            '\t'..='\r' | ' ' => Class::Space,
            _ if c.is_ascii() => Class::Other,
            _ => *known.entry(c).or_insert_with(|| self.ask(c)),
        }
    }

    /// The class of `c` by the regex engine.
    fn ask(&self, c: char) -> Class {
        let mut buffer = [0; 4];
        let c = &*c.encode_utf8(&mut buffer);
        let is = |regex: &SysRegex| regex.find_iter(c).next().is_some();
        if is(&self.letter) {
            Class::Letter
        } else if is(&self.number) {
            Class::Number
        } else if is(&self.space) {
            Class::Space
        } else {
            Class::Other
        }
    }
}

/// Per unit of work: the ids of words already tokenized, the classes of characters seen.
#[derive(Default)]
pub(crate) struct Scratch {
    words: AHashMap<String, Vec<u32>>,
    classes: AHashMap<char, Class>,
}

pub(crate) struct FastPath {
    splitter: Splitter,
    /// Finds the added tokens: a text holding one is left to the full pipeline.
    added_tokens: Option<AhoCorasick>,
}

impl FastPath {
    /// The fast path of `tokenizer`, when its normalizer and pre-tokenizer are one of the two
    /// pipelines covered and its added tokens are matched on the raw text.
    pub(crate) fn of(tokenizer: &tokenizers::Tokenizer) -> Result<Option<FastPath>> {
        let splitter = match (tokenizer.get_normalizer(), tokenizer.get_pre_tokenizer()) {
            (
                Some(NormalizerWrapper::BertNormalizer(n)),
                Some(PreTokenizerWrapper::BertPreTokenizer(_)),
            ) => Splitter::Bert {
                clean_text: n.clean_text,
                chinese_chars: n.handle_chinese_chars,
                strip_accents: n.strip_accents.unwrap_or(n.lowercase),
                lowercase: n.lowercase,
            },
            (None, Some(PreTokenizerWrapper::ByteLevel(b))) if b.use_regex => Splitter::ByteLevel {
                add_prefix_space: b.add_prefix_space,
                classes: ByteLevelClasses::new()?,
                byte_chars: Box::new(byte_chars()),
            },
            _ => return Ok(None),
        };
        let added = tokenizer.get_added_vocabulary().get_added_tokens_decoder();
        // A normalized added token is matched on the normalized text: leave such tokenizers be.
        if tokenizer.get_normalizer().is_some() && added.values().any(|t| t.normalized) {
            return Ok(None);
        }
        let contents: Vec<&str> = added.values().map(|t| t.content.as_str()).collect();
        let added_tokens = match contents.is_empty() {
            true => None,
            false => Some(
                AhoCorasick::new(contents)
                    .map_err(|e| Error::Other(format!("added tokens matcher: {e}")))?,
            ),
        };
        Ok(Some(FastPath { splitter, added_tokens }))
    }

    /// The ids of `text`, or `None` when the full pipeline must encode it. Words seen before
    /// come from `scratch`.
    pub(crate) fn ids(
        &self,
        text: &str,
        model: &impl Model,
        scratch: &mut Scratch,
    ) -> Result<Option<Vec<u32>>> {
        let Scratch { words, classes: known } = scratch;
        if text.is_empty() || self.added_tokens.as_ref().is_some_and(|a| a.is_match(text)) {
            return Ok(None);
        }
        let mut ids = Vec::new();
        let mut word_ids = |word: &str| -> Result<()> {
            match words.get(word) {
                Some(known) => ids.extend_from_slice(known),
                None => {
                    let tokens = model.tokenize(word)?;
                    let new: Vec<u32> = tokens.iter().map(|t| t.id).collect();
                    ids.extend_from_slice(&new);
                    words.insert(word.to_string(), new);
                }
            }
            Ok(())
        };
        match &self.splitter {
            Splitter::Bert { clean_text, chinese_chars, strip_accents, lowercase } => {
                let normalized =
                    bert_normalize(text, *clean_text, *chinese_chars, *strip_accents, *lowercase);
                bert_words(&normalized, &mut word_ids)?;
            }
            Splitter::ByteLevel { add_prefix_space, classes, byte_chars } => {
                let prefixed;
                let text = if *add_prefix_space && !text.starts_with(' ') {
                    prefixed = format!(" {text}");
                    prefixed.as_str()
                } else {
                    text
                };
                let mut word = String::new();
                byte_level_pieces(
                    text,
                    |c| classes.of(c, known),
                    |piece| {
                        word.clear();
                        word.extend(piece.bytes().map(|b| byte_chars[b as usize]));
                        word_ids(&word)
                    },
                )?;
            }
        }
        Ok(Some(ids))
    }
}

/// The pieces GPT-2's regex (pre_tokenizers/byte_level.rs `RE`) cuts `text` into (`find_iter` with
/// `SplitDelimiterBehavior::Isolated`), by scanning: at each position the first alternative that
/// matches, as the backtracking engine takes them. The tests compare it with the regex itself.
fn byte_level_pieces(
    text: &str,
    mut class: impl FnMut(char) -> Class,
    mut piece: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let chars: Vec<(usize, char, Class)> =
        text.char_indices().map(|(i, c)| (i, c, class(c))).collect();
    let at = |k: usize| chars.get(k).map_or(text.len(), |(i, _, _)| *i);
    let run = |from: usize, of: Class| {
        from + chars[from..].iter().take_while(|(_, _, c)| *c == of).count()
    };
    let mut i = 0;
    while i < chars.len() {
        let (_, c, own) = chars[i];
        let next = chars.get(i + 1).map(|(_, c, class)| (*c, *class));
        let end = match (c, own, next) {
            // 's|'t|'re|'ve|'m|'ll|'d
            ('\'', _, _) if contraction(&text[at(i + 1)..]).is_some() => {
                let length = contraction(&text[at(i + 1)..]).unwrap_or(0);
                i + 1 + length
            }
            // " ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+" with the space
            (' ', _, Some((_, after))) if after != Class::Space => run(i + 1, after),
            // ... and without it
            (_, Class::Letter | Class::Number | Class::Other, _) => run(i, own),
            // "\s+(?!\S)|\s+": a run of spaces, but its last one when a non-space follows
            _ => {
                let end = run(i, Class::Space);
                if end < chars.len() && end - i >= 2 {
                    end - 1
                } else {
                    end
                }
            }
        };
        piece(&text[at(i)..at(end)])?;
        i = end;
    }
    Ok(())
}

/// The length in characters of the contraction ("s", "t", "re", "ve", "m", "ll", "d") that
/// `rest` starts with, after an apostrophe.
fn contraction(rest: &str) -> Option<usize> {
    ["s", "t", "re", "ve", "m", "ll", "d"]
        .iter()
        .find(|suffix| rest.starts_with(*suffix))
        .map(|suffix| suffix.len())
}

/// `BertNormalizer::normalize`: clean-up, spaces around CJK ideographs, accents stripped after
/// NFD, lower case per character.
fn bert_normalize(
    text: &str,
    clean_text: bool,
    chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
) -> String {
    let mut cleaned = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        let c = if clean_text {
            if c == '\0' || c == '\u{fffd}' || is_control(c) {
                continue;
            }
            if is_whitespace(c) {
                ' '
            } else {
                c
            }
        } else {
            c
        };
        if chinese_chars && is_chinese_char(c) {
            cleaned.extend([' ', c, ' ']);
        } else {
            cleaned.push(c);
        }
    }
    if !strip_accents && !lowercase {
        return cleaned;
    }
    let mut out = String::with_capacity(cleaned.len());
    let mut push = |c: char| {
        if lowercase && c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if lowercase {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    };
    if strip_accents && !cleaned.is_ascii() {
        for (c, _) in cleaned.chars().nfd() {
            if !c.is_mark_nonspacing() {
                push(c);
            }
        }
    } else {
        cleaned.chars().for_each(push);
    }
    out
}

/// `BertPreTokenizer`: split on whitespace (dropped), then every punctuation character alone.
fn bert_words(text: &str, mut word: impl FnMut(&str) -> Result<()>) -> Result<()> {
    for piece in text.split(char::is_whitespace).filter(|p| !p.is_empty()) {
        let mut start = 0;
        for (i, c) in piece.char_indices() {
            if is_bert_punctuation(c) {
                if start < i {
                    word(&piece[start..i])?;
                }
                start = i + c.len_utf8();
                word(&piece[i..start])?;
            }
        }
        if start < piece.len() {
            word(&piece[start..])?;
        }
    }
    Ok(())
}

/// pre_tokenizers/bert.rs `is_bert_punc` (for ASCII, the Unicode tables are not needed).
fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_ascii() && c.is_punctuation())
}

/// normalizers/bert.rs `is_whitespace`.
fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// normalizers/bert.rs `is_control`: the "Other" categories, but for tab and line ends.
fn is_control(c: char) -> bool {
    // The only "Other" characters of ASCII are its control characters (Cc).
    let other = if c.is_ascii() { c.is_ascii_control() } else { c.is_other() };
    other && !matches!(c, '\t' | '\n' | '\r')
}

/// normalizers/bert.rs `is_chinese_char`: the CJK Unified Ideographs blocks.
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// GPT-2's byte-to-character table (`bytes_to_unicode` in openai/gpt-2 `encoder.py`): printable
/// bytes stand for themselves, the others for the characters from U+0100 on.
pub(crate) fn byte_chars() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        table[b as usize] = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("U+0100..U+0143 are characters")
        };
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GPT-2's pre-tokenization regex, as `pre_tokenizers/byte_level.rs` compiles it.
    const BYTE_LEVEL_PATTERN: &str =
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// The pieces of `text` by the regex (tokenizers' `Pattern for &Regex`, Isolated).
    fn regex_pieces(regex: &SysRegex, text: &str) -> Vec<String> {
        let mut pieces = Vec::new();
        let mut previous = 0;
        for (start, end) in regex.find_iter(text) {
            if previous != start {
                pieces.push(text[previous..start].to_string());
            }
            pieces.push(text[start..end].to_string());
            previous = end;
        }
        if previous != text.len() {
            pieces.push(text[previous..].to_string());
        }
        pieces
    }

    fn scanned_pieces(classes: &ByteLevelClasses, text: &str) -> Vec<String> {
        let mut known = AHashMap::new();
        let mut pieces = Vec::new();
        byte_level_pieces(
            text,
            |c| classes.of(c, &mut known),
            |piece| {
                pieces.push(piece.to_string());
                Ok(())
            },
        )
        .unwrap();
        pieces
    }

    const ALPHABET: &[char] = &[
        ' ', '\'', 's', 't', 'r', 'e', 'v', 'm', 'l', 'd', 'A', '0', '!', '-', '\n', '\t', '\r',
        '\u{b}', '\u{c}', '\u{1c}', '\u{85}', '\u{a0}', '\u{3000}', '\u{2028}', '\u{1680}',
        '\u{180e}', '\u{200b}', '\u{feff}', 'é', 'ñ', '中', 'ß', '😀', '\u{301}', '٣', '½', 'Ⅻ',
        '¿',
    ];

    #[test]
    fn the_scanner_cuts_as_the_gpt2_regex_on_every_short_string() {
        let regex = SysRegex::new(BYTE_LEVEL_PATTERN).unwrap();
        let classes = ByteLevelClasses::new().unwrap();
        let mut texts = vec![String::new()];
        for _ in 0..3 {
            texts = texts
                .iter()
                .flat_map(|t| ALPHABET.iter().map(move |c| format!("{t}{c}")))
                .chain(texts.iter().cloned())
                .collect();
        }
        for text in &texts {
            assert_eq!(scanned_pieces(&classes, text), regex_pieces(&regex, text), "{text:?}");
        }
        // and on longer ones
        let mut state: u64 = 7;
        for _ in 0..5000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (state >> 58) as usize;
            let text: String = (0..len)
                .map(|k| ALPHABET[((state >> (k % 48)) as usize + k * 7) % ALPHABET.len()])
                .collect();
            assert_eq!(scanned_pieces(&classes, &text), regex_pieces(&regex, &text), "{text:?}");
        }
    }

    #[test]
    fn ascii_classes_agree_with_the_regex_engine() {
        let classes = ByteLevelClasses::new().unwrap();
        for b in 0..128u8 {
            let c = char::from(b);
            let expected = classes.ask(c);
            assert_eq!(classes.of(c, &mut AHashMap::new()), expected, "{c:?}");
        }
    }

    #[test]
    fn byte_chars_match_gpt2() {
        let table = byte_chars();
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'a' as usize], 'a');
        assert_eq!(table[0xAD], 'Ń');
        let distinct: std::collections::HashSet<char> = table.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn bert_normalization_by_hand() {
        assert_eq!(bert_normalize("Ça\tVA\u{0}?", true, true, true, true), "ca va?");
        assert_eq!(bert_normalize("中文", true, true, true, true), " 中  文 ");
        assert_eq!(bert_normalize("Ça", true, true, false, false), "Ça");
        let mut words = Vec::new();
        bert_words("hey, you!!  x", |w| {
            words.push(w.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(words, ["hey", ",", "you", "!", "!", "x"]);
    }
}
