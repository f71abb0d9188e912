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
use aho_corasick::AhoCorasick;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::utils::SysRegex;
use super::encode::WordCache;
use tokenizers::Model;
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

/// GPT-2's pre-tokenization regex, as `pre_tokenizers/byte_level.rs` compiles it.
const BYTE_LEVEL_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

enum Splitter {
    Bert { clean_text: bool, chinese_chars: bool, strip_accents: bool, lowercase: bool },
    ByteLevel { add_prefix_space: bool, regex: SysRegex, byte_chars: [char; 256] },
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
            (Some(NormalizerWrapper::BertNormalizer(n)), Some(PreTokenizerWrapper::BertPreTokenizer(_))) => {
                Splitter::Bert {
                    clean_text: n.clean_text,
                    chinese_chars: n.handle_chinese_chars,
                    strip_accents: n.strip_accents.unwrap_or(n.lowercase),
                    lowercase: n.lowercase,
                }
            }
            (None, Some(PreTokenizerWrapper::ByteLevel(b))) if b.use_regex => Splitter::ByteLevel {
                add_prefix_space: b.add_prefix_space,
                regex: SysRegex::new(BYTE_LEVEL_PATTERN)
                    .map_err(|e| Error::Other(format!("byte-level regex: {e}")))?,
                byte_chars: byte_chars(),
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
    /// come from `words`.
    pub(crate) fn ids(
        &self,
        text: &str,
        model: &impl Model,
        words: &mut WordCache,
    ) -> Result<Option<Vec<u32>>> {
        if text.is_empty() || self.added_tokens.as_ref().is_some_and(|a| a.is_match(text)) {
            return Ok(None);
        }
        let mut ids = Vec::new();
        let mut word_ids = |word: &str| -> Result<()> {
            match words.get(word) {
                Some(known) => ids.extend_from_slice(known),
                None => {
                    let tokens = model.tokenize(word).map_err(super::encode::tokenizers_error)?;
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
            Splitter::ByteLevel { add_prefix_space, regex, byte_chars } => {
                let prefixed;
                let text = if *add_prefix_space && !text.starts_with(' ') {
                    prefixed = format!(" {text}");
                    prefixed.as_str()
                } else {
                    text
                };
                let mut word = String::new();
                let mut mapped = |piece: &str| {
                    word.clear();
                    word.extend(piece.bytes().map(|b| byte_chars[b as usize]));
                    word_ids(&word)
                };
                // SplitDelimiterBehavior::Isolated: the matches and the text between them.
                let mut previous = 0;
                for (start, end) in regex.find_iter(text) {
                    if previous != start {
                        mapped(&text[previous..start])?;
                    }
                    mapped(&text[start..end])?;
                    previous = end;
                }
                if previous != text.len() {
                    mapped(&text[previous..])?;
                }
            }
        }
        Ok(Some(ids))
    }
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
            if is_whitespace(c) { ' ' } else { c }
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
