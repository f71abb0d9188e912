//! What transformers' fast tokenizers keep of each row beyond the ids: the tokens, the word and
//! sequence each token comes from (`BatchEncoding.word_ids()`, `sequence_ids()`, `tokens()`),
//! the character offsets (`return_offsets_mapping`) and the special-tokens mask
//! (`return_special_tokens_mask`); and rows given as words already split
//! (`is_split_into_words`). These go through tokenizers' full pipeline, which tracks them.

use super::encode::{check_pairs, units};
use super::request::Plan;
use super::Tokenizer;
use crate::error::Result;
use crate::parallel;
use crate::rows::{Rows, Side};
use tokenizers::Encoding;

/// One sequence of a row: a text, or its words (`is_split_into_words`).
#[derive(Debug, Clone)]
pub enum Sequence<'a> {
    Text(&'a str),
    Words(Vec<&'a str>),
}

/// The per-token details of encoded rows, row by row, padded as the ids are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Details {
    pub tokens: Vec<Vec<String>>,
    /// The index of the word each token comes from (`None` for special and pad tokens).
    pub word_ids: Vec<Vec<Option<u32>>>,
    /// 0 or 1 for the tokens of the first or second sequence, `None` for the others.
    pub sequence_ids: Vec<Vec<Option<usize>>>,
    /// Character offsets in the text (or in the word, for split words); (0, 0) when added.
    pub offsets: Vec<Vec<(usize, usize)>>,
    /// 1 for special and pad tokens.
    pub special_tokens_mask: Vec<Vec<u32>>,
}

impl Details {
    fn push(&mut self, encoding: &Encoding) {
        self.tokens.push(encoding.get_tokens().to_vec());
        self.word_ids.push(encoding.get_word_ids().to_vec());
        self.sequence_ids.push(encoding.get_sequence_ids());
        self.offsets.push(encoding.get_offsets().to_vec());
        self.special_tokens_mask.push(encoding.get_special_tokens_mask().to_vec());
    }

    /// Pads each row to the length of the same row of `padded` on `side`, with what tokenizers'
    /// `Encoding::pad` puts there.
    fn pad_like(&mut self, padded: &Rows, side: Side, pad_token: &str) {
        fn pad<T: Clone>(row: &mut Vec<T>, length: usize, side: Side, fill: T) {
            let missing = length.saturating_sub(row.len());
            match side {
                Side::Right => row.extend(std::iter::repeat_n(fill, missing)),
                Side::Left => {
                    row.splice(0..0, std::iter::repeat_n(fill, missing));
                }
            }
        }
        for (i, length) in padded.lengths().into_iter().enumerate() {
            pad(&mut self.tokens[i], length, side, pad_token.to_string());
            pad(&mut self.word_ids[i], length, side, None);
            pad(&mut self.sequence_ids[i], length, side, None);
            pad(&mut self.offsets[i], length, side, (0, 0));
            pad(&mut self.special_tokens_mask[i], length, side, 1);
        }
    }
}

impl Tokenizer {
    /// One sequence through the pipeline, with token strings and offsets in characters (as
    /// the tokenizers binding of Python gives them), not yet post-processed: as tokenizers'
    /// `encode_single_sequence`, through a copy of the pipeline without its post-processor
    /// (which would mark the sequence and trim its offsets a second time in `finish_row`).
    fn encode_sequence(&self, sequence: &Sequence, type_id: u32) -> Result<Encoding> {
        let plain = self.unprocessed.get_or_init(|| {
            let mut plain = self.inner.clone();
            plain.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
            plain
        });
        let mut encoding = match sequence {
            Sequence::Text(text) => plain.encode_char_offsets(*text, false)?,
            Sequence::Words(words) => plain.encode_char_offsets(&words[..], false)?,
        };
        encoding.set_type_ids(vec![type_id; encoding.len()]);
        Ok(encoding)
    }

    /// Encodes `firsts` (with `pairs`, row by row) in parallel with their details, then pads
    /// both together.
    pub fn encode_details(
        &self,
        firsts: &[Sequence],
        pairs: Option<&[Sequence]>,
        plan: &Plan,
    ) -> Result<(Rows, Details)> {
        check_pairs(firsts.len(), pairs.map(<[Sequence]>::len))?;
        let parts = parallel::map(&units(firsts.len()), |range| {
            range
                .clone()
                .map(|i| {
                    let first = self.encode_sequence(&firsts[i], 0)?;
                    let second =
                        pairs.map(|pairs| self.encode_sequence(&pairs[i], 1)).transpose()?;
                    self.finish_row(first, second, plan)
                })
                .collect::<Result<Vec<Encoding>>>()
        });
        let mut rows = Rows::empty(true);
        let mut details = Details::default();
        for part in parts {
            for encoding in part? {
                rows.push(&encoding)?;
                details.push(&encoding);
            }
        }
        if let Some(to) = &plan.padding {
            rows = rows.pad(to)?;
            let pad_token = self.special_token("pad_token").unwrap_or_default().to_string();
            details.pad_like(&rows, to.side, &pad_token);
        }
        Ok((rows, details))
    }
}
