//! Encoding many texts at once, with the padding and truncation rules of transformers'
//! `PreTrainedTokenizerBase._get_padding_truncation_strategies` and the pipeline of tokenizers'
//! `TokenizerImpl::encode` + `post_process`, in parallel over the rows.

use super::config::Side;
use super::fast::Scratch;
use super::Tokenizer;
use crate::error::{Error, Result};
use crate::parallel;
use std::ops::Range;
use tokenizers::{
    truncate_encodings, Encoding, PostProcessor, PostProcessorWrapper, Token, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

/// transformers' `padding` argument (`PaddingStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    DoNotPad,
    Longest,
    MaxLength,
}

impl Padding {
    pub fn parse(value: &str) -> Result<Padding> {
        match value {
            "longest" => Ok(Padding::Longest),
            "max_length" => Ok(Padding::MaxLength),
            "do_not_pad" => Ok(Padding::DoNotPad),
            other => Err(Error::value(format!(
                "{other} is not a valid PaddingStrategy, please select one of \
                 ['longest', 'max_length', 'do_not_pad']"
            ))),
        }
    }
}

/// transformers' `truncation` argument (`TruncationStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    DoNotTruncate,
    LongestFirst,
    OnlyFirst,
    OnlySecond,
}

impl Truncation {
    pub fn parse(value: &str) -> Result<Truncation> {
        match value {
            "only_first" => Ok(Truncation::OnlyFirst),
            "only_second" => Ok(Truncation::OnlySecond),
            "longest_first" => Ok(Truncation::LongestFirst),
            "do_not_truncate" => Ok(Truncation::DoNotTruncate),
            other => Err(Error::value(format!(
                "{other} is not a valid TruncationStrategy, please select one of \
                 ['only_first', 'only_second', 'longest_first', 'do_not_truncate']"
            ))),
        }
    }
}

/// The arguments of a call, as transformers' `__call__` takes them.
#[derive(Debug, Clone)]
pub struct Request {
    pub add_special_tokens: bool,
    pub padding: Padding,
    /// `None` when not given: then `max_length` alone turns truncation on.
    pub truncation: Option<Truncation>,
    pub max_length: Option<usize>,
    pub pad_to_multiple_of: Option<usize>,
    /// `None`: the tokenizer's `padding_side`.
    pub padding_side: Option<Side>,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            add_special_tokens: true,
            padding: Padding::DoNotPad,
            truncation: None,
            max_length: None,
            pad_to_multiple_of: None,
            padding_side: None,
        }
    }
}

/// What an encoding does once the request is resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    add_special_tokens: bool,
    truncation: Option<TruncationParams>,
    padding: Option<PadTo>,
}

#[derive(Debug, Clone)]
struct PadTo {
    /// `None`: the longest row.
    length: Option<usize>,
    multiple: Option<usize>,
    side: Side,
    pad_id: u32,
}

/// Encoded rows, flat: row `i` is `offsets[i]..offsets[i + 1]` of each vector. The element types
/// are those `datasets` stores these columns in (`OptimizedTypedSequence`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub input_ids: Vec<i32>,
    pub token_type_ids: Vec<i8>,
    pub attention_mask: Vec<i8>,
    pub offsets: Vec<usize>,
}

impl Batch {
    fn empty() -> Batch {
        Batch { offsets: vec![0], ..Batch::default() }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn row(&self, i: usize) -> Range<usize> {
        self.offsets[i]..self.offsets[i + 1]
    }

    fn row_lengths(&self) -> impl Iterator<Item = usize> + '_ {
        self.offsets.windows(2).map(|w| w[1] - w[0])
    }

    /// The length of the longest row (0 for no rows).
    pub fn longest(&self) -> usize {
        self.row_lengths().max().unwrap_or(0)
    }

    /// The common length of the rows, if they all have the same.
    pub fn width(&self) -> Option<usize> {
        let longest = self.longest();
        self.row_lengths().all(|n| n == longest).then_some(longest)
    }

    pub(crate) fn push(&mut self, encoding: &Encoding) -> Result<()> {
        for &id in encoding.get_ids() {
            self.input_ids.push(narrow(id, "token id")?);
        }
        for &type_id in encoding.get_type_ids() {
            self.token_type_ids.push(narrow(type_id, "token type id")?);
        }
        for &mask in encoding.get_attention_mask() {
            self.attention_mask.push(narrow(mask, "attention mask")?);
        }
        self.offsets.push(self.input_ids.len());
        Ok(())
    }

    fn append(&mut self, other: Batch) {
        let base = self.input_ids.len();
        self.input_ids.extend(other.input_ids);
        self.token_type_ids.extend(other.token_type_ids);
        self.attention_mask.extend(other.attention_mask);
        self.offsets.extend(other.offsets[1..].iter().map(|o| o + base));
    }

    /// Pads every row shorter than the target, as tokenizers' `pad_encodings` and
    /// `Encoding::pad` do: pad id, token type 0, attention 0.
    fn pad(self, to: &PadTo) -> Result<Batch> {
        let mut length = to.length.unwrap_or_else(|| self.longest());
        if let Some(multiple) = to.multiple.filter(|m| *m > 0) {
            length = length.checked_next_multiple_of(multiple).ok_or_else(|| too_long(length))?;
        }
        if self.row_lengths().all(|n| n >= length) {
            return Ok(self);
        }
        let pad_id: i32 = narrow(to.pad_id, "pad token id")?;
        // A length far beyond the data (max_length=10**12) is a MemoryError, not an abort.
        let capacity = self.len().checked_mul(length).ok_or_else(|| too_long(length))?;
        let mut out = Batch {
            input_ids: Vec::new(),
            token_type_ids: Vec::new(),
            attention_mask: Vec::new(),
            offsets: Vec::with_capacity(self.offsets.len()),
        };
        let reserved = out.input_ids.try_reserve_exact(capacity).is_ok()
            && out.token_type_ids.try_reserve_exact(capacity).is_ok()
            && out.attention_mask.try_reserve_exact(capacity).is_ok();
        if !reserved {
            return Err(Error::Memory(format!(
                "padding {} texts to {length} tokens needs more memory than can be had; pass a \
                 smaller max_length",
                self.len()
            )));
        }
        out.offsets.push(0);
        for i in 0..self.len() {
            let row = self.row(i);
            let missing = length.saturating_sub(row.len());
            let pad = |out: &mut Batch| {
                out.input_ids.extend(std::iter::repeat_n(pad_id, missing));
                out.token_type_ids.extend(std::iter::repeat_n(0, missing));
                out.attention_mask.extend(std::iter::repeat_n(0, missing));
            };
            if to.side == Side::Left {
                pad(&mut out);
            }
            out.input_ids.extend_from_slice(&self.input_ids[row.clone()]);
            out.token_type_ids.extend_from_slice(&self.token_type_ids[row.clone()]);
            out.attention_mask.extend_from_slice(&self.attention_mask[row]);
            if to.side == Side::Right {
                pad(&mut out);
            }
            out.offsets.push(out.input_ids.len());
        }
        Ok(out)
    }
}

/// A token id, type id or mask in the narrower type its column keeps.
fn too_long(length: usize) -> Error {
    Error::Memory(format!(
        "cannot pad to {length} tokens: the size overflows; pass a smaller max_length"
    ))
}

fn narrow<T: TryFrom<u32>>(value: u32, what: &str) -> Result<T> {
    T::try_from(value).map_err(|_| {
        Error::value(format!("{what} {value} does not fit in {}", std::any::type_name::<T>()))
    })
}

/// Rows per unit of parallel work: enough units to balance the pool, not so many that the
/// bookkeeping shows.
fn rows_per_unit(rows: usize) -> usize {
    let units = rayon::current_num_threads().max(1) * 8;
    rows.div_ceil(units).clamp(1, 512)
}

impl Tokenizer {
    /// Resolves a request as `_get_padding_truncation_strategies` does.
    pub fn plan(&self, request: &Request) -> Result<Plan> {
        let mut padding = request.padding;
        let mut truncation = request.truncation;
        let mut max_length = request.max_length;
        // "If you only set max_length, it activates truncation for max_length".
        if max_length.is_some() && padding == Padding::DoNotPad && truncation.is_none() {
            truncation = Some(Truncation::LongestFirst);
        }
        let mut truncation = truncation.unwrap_or(Truncation::DoNotTruncate);
        if max_length.is_none() {
            if padding == Padding::MaxLength {
                match self.model_max_length {
                    Some(limit) => max_length = Some(limit),
                    None => padding = Padding::DoNotPad,
                }
            }
            if truncation != Truncation::DoNotTruncate {
                match self.model_max_length {
                    Some(limit) => max_length = Some(limit),
                    None => truncation = Truncation::DoNotTruncate,
                }
            }
        }
        let pad_id = match padding {
            Padding::DoNotPad => None,
            _ => Some(self.pad_token_id().ok_or_else(|| {
                Error::value(
                    "Asking to pad but the tokenizer does not have a padding token. Please select a \
                     token to use as `pad_token` `(tokenizer.pad_token = tokenizer.eos_token e.g.)` \
                     or add a new pad token via `tokenizer.add_special_tokens({'pad_token': '[PAD]'})`.",
                )
            })?),
        };
        if let (Some(multiple), Some(length), Some(_), false) = (
            request.pad_to_multiple_of,
            max_length,
            pad_id,
            truncation == Truncation::DoNotTruncate,
        ) {
            if multiple != 0 && length % multiple != 0 {
                return Err(Error::value(format!(
                    "Truncation and padding are both activated but truncation length ({length}) \
                     is not a multiple of pad_to_multiple_of ({multiple})."
                )));
            }
        }

        let strategy = match truncation {
            Truncation::DoNotTruncate => None,
            Truncation::LongestFirst => Some(TruncationStrategy::LongestFirst),
            Truncation::OnlyFirst => Some(TruncationStrategy::OnlyFirst),
            Truncation::OnlySecond => Some(TruncationStrategy::OnlySecond),
        };
        let truncation = match (strategy, max_length) {
            (Some(strategy), Some(max_length)) => Some(TruncationParams {
                direction: match self.truncation_side {
                    Side::Left => TruncationDirection::Left,
                    Side::Right => TruncationDirection::Right,
                },
                max_length,
                strategy,
                stride: 0,
            }),
            _ => None,
        };
        let padding = pad_id.map(|pad_id| PadTo {
            length: if padding == Padding::MaxLength { max_length } else { None },
            multiple: request.pad_to_multiple_of,
            side: request.padding_side.unwrap_or(self.padding_side),
            pad_id,
        });
        Ok(Plan { add_special_tokens: request.add_special_tokens, truncation, padding })
    }

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
            let mut encoding = encoded.map_err(tokenizers_error)?;
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
    fn finish_row(
        &self,
        first: Encoding,
        second: Option<Encoding>,
        plan: &Plan,
    ) -> Result<Encoding> {
        let (first, second) =
            match (&plan.truncation, self.truncation_length(second.is_some(), plan)) {
                (Some(params), Some(max_length)) => {
                    let params = TruncationParams { max_length, ..params.clone() };
                    truncate_encodings(first, second, &params).map_err(tokenizers_error)?
                }
                _ => (first, second),
            };
        post_process(self.inner.get_post_processor(), first, second, plan.add_special_tokens)
    }

    /// Encodes one row into `batch`: through the fast path and the learnt frame of special
    /// tokens when both apply and nothing needs truncating, else through the full pipeline.
    fn push_row(
        &self,
        batch: &mut Batch,
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
    ) -> Result<Batch> {
        if let Some(pairs) = pairs.filter(|p| p.len() != texts.len()) {
            return Err(Error::value(format!(
                "batch length of `text`: {} does not match batch length of `text_pair`: {}.",
                texts.len(),
                pairs.len()
            )));
        }
        let step = rows_per_unit(texts.len());
        let units: Vec<Range<usize>> = (0..texts.len())
            .step_by(step)
            .map(|start| start..texts.len().min(start + step))
            .collect();
        let parts = parallel::map(&units, |rows| {
            let mut part = Batch::empty();
            let mut scratch = Scratch::default();
            for i in rows.clone() {
                self.push_row(&mut part, texts[i], pairs.map(|p| p[i]), plan, &mut scratch)?;
            }
            Ok::<_, Error>(part)
        });
        let mut batch = Batch::empty();
        for part in parts {
            batch.append(part?);
        }
        match &plan.padding {
            Some(to) => batch.pad(to),
            None => Ok(batch),
        }
    }
}

/// The special tokens of `post_process` (step 2), or tokenizers' default merge without one.
fn post_process(
    processor: Option<&PostProcessorWrapper>,
    first: Encoding,
    second: Option<Encoding>,
    add_special_tokens: bool,
) -> Result<Encoding> {
    let processed = match processor {
        Some(processor) => processor.process(first, second, add_special_tokens),
        None => <dyn PostProcessor>::default_process(
            std::iter::once(first).chain(second).collect(),
            add_special_tokens,
        )
        .map(|encodings| Encoding::merge(encodings, false)),
    };
    processed.map_err(tokenizers_error)
}

/// The encoding of one sequence given by its ids (no token strings, no offsets).
fn ids_encoding(ids: Vec<u32>, type_id: u32) -> Encoding {
    let tokens = ids.into_iter().map(|id| Token::new(id, String::new(), (0, 0))).collect();
    Encoding::from_tokens(tokens, type_id)
}

/// Where a post-processor puts its special tokens around one or two sequences, with their type
/// ids: learnt by running it on marker ids, so that most rows skip building `Encoding`s.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    before: Vec<(u32, u32)>,
    first_type: u32,
    between: Vec<(u32, u32)>,
    second_type: u32,
    after: Vec<(u32, u32)>,
}

impl Frame {
    // Ids no vocabulary reaches, that still fit the i32 of `Batch`.
    const FIRST: u32 = i32::MAX as u32 - 1;
    const SECOND: u32 = i32::MAX as u32 - 2;

    /// The frame of `processor` for single sequences or pairs, if it is one: the special tokens
    /// must not depend on the sequences (checked on several lengths).
    pub(crate) fn learn(
        processor: Option<&PostProcessorWrapper>,
        pair: bool,
        add_special_tokens: bool,
    ) -> Option<Frame> {
        let run = |n_first: usize, n_second: usize| {
            let first = ids_encoding(vec![Self::FIRST; n_first], 0);
            let second = pair.then(|| ids_encoding(vec![Self::SECOND; n_second], 1));
            post_process(processor, first, second, add_special_tokens).ok()
        };
        let sample = run(1, 1)?;
        let pieces: Vec<(u32, u32)> =
            sample.get_ids().iter().copied().zip(sample.get_type_ids().iter().copied()).collect();
        let at = |marker| pieces.iter().position(|(id, _)| *id == marker);
        let first_at = at(Self::FIRST)?;
        let second_at = if pair { at(Self::SECOND)? } else { pieces.len() };
        if second_at < first_at {
            return None;
        }
        let frame = Frame {
            before: pieces[..first_at].to_vec(),
            first_type: pieces[first_at].1,
            between: pieces[first_at + 1..second_at].to_vec(),
            second_type: pieces.get(second_at).map_or(0, |p| p.1),
            after: pieces[(second_at + usize::from(pair)).min(pieces.len())..].to_vec(),
        };
        let lengths: &[(usize, usize)] = &[(0, 0), (3, 2), (2, 0), (0, 4)];
        for &(n_first, n_second) in lengths {
            let expected = run(n_first, n_second)?;
            let mut predicted = Batch::empty();
            let second = vec![Self::SECOND; n_second];
            frame
                .push(&mut predicted, &vec![Self::FIRST; n_first], pair.then_some(&second[..]))
                .ok()?;
            let mut actual = Batch::empty();
            actual.push(&expected).ok()?;
            if predicted != actual {
                return None;
            }
        }
        Some(frame)
    }

    /// Appends one row: the sequences' ids inside the special tokens.
    fn push(&self, batch: &mut Batch, first: &[u32], second: Option<&[u32]>) -> Result<()> {
        let mut put = |id: u32, type_id: u32| -> Result<()> {
            batch.input_ids.push(narrow(id, "token id")?);
            batch.token_type_ids.push(narrow(type_id, "token type id")?);
            batch.attention_mask.push(1);
            Ok(())
        };
        for &(id, type_id) in &self.before {
            put(id, type_id)?;
        }
        for &id in first {
            put(id, self.first_type)?;
        }
        for &(id, type_id) in &self.between {
            put(id, type_id)?;
        }
        for &id in second.unwrap_or_default() {
            put(id, self.second_type)?;
        }
        for &(id, type_id) in &self.after {
            put(id, type_id)?;
        }
        batch.offsets.push(batch.input_ids.len());
        Ok(())
    }
}

/// An error of the tokenizers crate (truncation impossible, ...), with its own message.
pub(crate) fn tokenizers_error(error: tokenizers::Error) -> Error {
    Error::value(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: &[&[i32]]) -> Batch {
        let mut b = Batch::empty();
        for row in rows {
            b.input_ids.extend_from_slice(row);
            b.token_type_ids.extend(row.iter().map(|_| 0));
            b.attention_mask.extend(row.iter().map(|_| 1));
            b.offsets.push(b.input_ids.len());
        }
        b
    }

    fn pad_to(length: Option<usize>, multiple: Option<usize>, side: Side) -> PadTo {
        PadTo { length, multiple, side, pad_id: 9 }
    }

    #[test]
    fn longest_padding_rounds_up_to_the_multiple_on_either_side() {
        let b = batch(&[&[1, 2, 3], &[4]]);
        let right = b.clone().pad(&pad_to(None, Some(4), Side::Right)).unwrap();
        assert_eq!(right.input_ids, [1, 2, 3, 9, 4, 9, 9, 9]);
        assert_eq!(right.attention_mask, [1, 1, 1, 0, 1, 0, 0, 0]);
        assert_eq!(right.offsets, [0, 4, 8]);
        assert_eq!(right.width(), Some(4));
        let left = b.pad(&pad_to(None, None, Side::Left)).unwrap();
        assert_eq!(left.input_ids, [1, 2, 3, 9, 9, 4]);
        assert_eq!(left.attention_mask, [1, 1, 1, 0, 0, 1]);
    }

    #[test]
    fn fixed_padding_leaves_longer_rows_as_they_are() {
        let b = batch(&[&[1, 2, 3, 4, 5], &[6]]).pad(&pad_to(Some(3), None, Side::Right)).unwrap();
        assert_eq!(b.input_ids, [1, 2, 3, 4, 5, 6, 9, 9]);
        assert_eq!(b.offsets, [0, 5, 8]);
        assert_eq!(b.width(), None);
        assert_eq!(b.longest(), 5);
    }

    #[test]
    fn append_shifts_the_offsets() {
        let mut a = batch(&[&[1, 2]]);
        a.append(batch(&[&[3], &[4, 5, 6]]));
        assert_eq!(a.offsets, [0, 2, 3, 6]);
        assert_eq!(a.len(), 3);
        assert_eq!(&a.input_ids[a.row(2)], [4, 5, 6]);
    }

    #[test]
    fn strategies_parse_as_transformers_spells_them() {
        assert_eq!(Padding::parse("max_length").unwrap(), Padding::MaxLength);
        assert_eq!(Truncation::parse("only_second").unwrap(), Truncation::OnlySecond);
        assert_eq!(
            Padding::parse("foo").unwrap_err().to_string(),
            "foo is not a valid PaddingStrategy, please select one of ['longest', 'max_length', 'do_not_pad']"
        );
        assert!(Truncation::parse("True").is_err());
    }

    #[test]
    fn narrowing_refuses_values_out_of_range() {
        assert_eq!(narrow::<i8>(1, "mask").unwrap(), 1);
        assert!(narrow::<i8>(300, "token type id").unwrap_err().to_string().contains("300"));
    }
}
