//! Encoding many texts at once through the pipeline of tokenizers' `TokenizerImpl::encode` +
//! `post_process`, in parallel over the rows.

use super::fast::Scratch;
use super::frame::{ids_encoding, post_process};
use super::request::Plan;
use super::Tokenizer;
use crate::error::{Error, Result};
use crate::parallel;
use crate::rows::Rows;
use std::ops::Range;
use tokenizers::{truncate_encodings, Encoding, PostProcessor, TruncationParams};

/// `rows` rows cut into units of parallel work: enough units to balance the pool, not so many
/// that the bookkeeping shows.
pub(super) fn units(rows: usize) -> Vec<Range<usize>> {
    let step = rows.div_ceil(parallel::threads() * 8).clamp(1, 512);
    (0..rows).step_by(step).map(|start| start..rows.min(start + step)).collect()
}

/// transformers' error for pairs that do not match the texts one to one.
pub(super) fn check_pairs(texts: usize, pairs: Option<usize>) -> Result<()> {
    match pairs {
        Some(pairs) if pairs != texts => Err(Error::value(format!(
            "batch length of `text`: {texts} does not match batch length of `text_pair`: {pairs}."
        ))),
        _ => Ok(()),
    }
}

impl Tokenizer {
    /// One row through the pipeline: each sequence alone, then truncation and special tokens
    /// (tokenizers' `TokenizerImpl::encode` and `post_process`). No padding. Without
    /// `with_tokens` the encoding has ids but no token strings or offsets (`encode_fast`).
    pub fn encode_row(
        &self,
        text: &str,
        pair: Option<&str>,
        plan: &Plan,
        with_tokens: bool,
    ) -> Result<Encoding> {
        let sequence = |text: &str, type_id: u32| -> Result<Encoding> {
            let encoded = if with_tokens {
                self.inner.encode(text, false)
            } else {
                self.inner.encode_fast(text, false)
            };
            let mut encoding = encoded?;
            // encode_single_sequence gives the second sequence type id 1.
            encoding.set_type_ids(vec![type_id; encoding.len()]);
            Ok(encoding)
        };
        let first = sequence(text, 0)?;
        let second = pair.map(|pair| sequence(pair, 1)).transpose()?;
        self.finish_row(first, second, plan)
    }

    /// The tokens `post_process` adds to a row, before truncation.
    fn added_tokens(&self, pair: bool, plan: &Plan) -> usize {
        match self.inner.get_post_processor() {
            Some(processor) if plan.add_special_tokens => processor.added_tokens(pair),
            _ => 0,
        }
    }

    /// The length a row's sequences are truncated to together, if the plan truncates: `None`
    /// also where `post_process` computes `max_length - added` unchecked, which in tokenizers'
    /// release builds wraps around below the number of special tokens to "no truncation".
    fn truncation_length(&self, pair: bool, plan: &Plan) -> Option<usize> {
        plan.truncation.as_ref()?.max_length.checked_sub(self.added_tokens(pair, plan))
    }

    /// Truncation and special tokens (tokenizers' `TokenizerImpl::post_process` without padding).
    pub(super) fn finish_row(
        &self,
        first: Encoding,
        second: Option<Encoding>,
        plan: &Plan,
    ) -> Result<Encoding> {
        let (first, second) =
            match (&plan.truncation, self.truncation_length(second.is_some(), plan)) {
                (Some(params), Some(max_length)) => {
                    let params = TruncationParams { max_length, ..params.clone() };
                    truncate_encodings(first, second, &params)?
                }
                _ => (first, second),
            };
        post_process(self.inner.get_post_processor(), first, second, plan.add_special_tokens)
    }

    /// Encodes one row into `batch`: through the fast path and the learnt frame of special
    /// tokens when both apply and nothing needs truncating, else through the full pipeline.
    fn push_row(
        &self,
        batch: &mut Rows,
        text: &str,
        pair: Option<&str>,
        plan: &Plan,
        scratch: &mut Scratch,
    ) -> Result<()> {
        if let Some(fast) = &self.fast {
            let model = self.inner.get_model();
            let first = fast.ids(text, model, scratch)?;
            let second = match pair {
                Some(pair) => fast.ids(pair, model, scratch)?.map(Some),
                None => Some(None),
            };
            if let (Some(first), Some(second)) = (first, second) {
                let total = first.len() + second.as_ref().map_or(0, Vec::len);
                let frame =
                    &self.frames[usize::from(pair.is_some())][usize::from(plan.add_special_tokens)];
                let truncates = plan.truncation.is_some()
                    && self.truncation_length(pair.is_some(), plan).is_some_and(|max| total > max);
                if let (Some(frame), false) = (frame, truncates) {
                    return frame.push(batch, &first, second.as_deref());
                }
                let first = ids_encoding(first, 0);
                let second = second.map(|ids| ids_encoding(ids, 1));
                return batch.push(&self.finish_row(first, second, plan)?);
            }
        }
        batch.push(&self.encode_row(text, pair, plan, false)?)
    }

    /// Encodes `texts` (with `pairs`, row by row) in parallel, then pads them together.
    pub fn encode_batch(
        &self,
        texts: &[&str],
        pairs: Option<&[&str]>,
        plan: &Plan,
    ) -> Result<Rows> {
        check_pairs(texts.len(), pairs.map(<[&str]>::len))?;
        let parts = parallel::map(&units(texts.len()), |rows| {
            let mut part = Rows::empty(true);
            let mut scratch = Scratch::default();
            for i in rows.clone() {
                self.push_row(&mut part, texts[i], pairs.map(|p| p[i]), plan, &mut scratch)?;
            }
            Ok::<_, Error>(part)
        });
        let mut batch = Rows::empty(true);
        for part in parts {
            batch.append(part?);
        }
        match &plan.padding {
            Some(to) => batch.pad(to),
            None => Ok(batch),
        }
    }
}
