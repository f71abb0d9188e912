//! The special tokens a post-processor puts around one or two sequences, learnt once per
//! tokenizer so that most rows skip building tokenizers' `Encoding`s.

use crate::error::Result;
use crate::rows::{narrow, Rows};
use tokenizers::{Encoding, PostProcessor, PostProcessorWrapper, Token};

/// The special tokens of `post_process` (step 2), or tokenizers' default merge without one.
pub(super) fn post_process(
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
    Ok(processed?)
}

/// The encoding of one sequence given by its ids (no token strings, no offsets).
pub(super) fn ids_encoding(ids: Vec<u32>, type_id: u32) -> Encoding {
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
    // Ids no vocabulary reaches, that still fit the i32 of `Rows`.
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
            let mut predicted = Rows::empty(true);
            let second = vec![Self::SECOND; n_second];
            frame
                .push(&mut predicted, &vec![Self::FIRST; n_first], pair.then_some(&second[..]))
                .ok()?;
            let mut actual = Rows::empty(true);
            actual.push(&expected).ok()?;
            if predicted != actual {
                return None;
            }
        }
        Some(frame)
    }

    /// Appends one row: the sequences' ids inside the special tokens.
    pub(super) fn push(
        &self,
        batch: &mut Rows,
        first: &[u32],
        second: Option<&[u32]>,
    ) -> Result<()> {
        let mut put = |id: u32, type_id: u32| -> Result<()> {
            batch.input_ids.push(narrow(id, "token id")?);
            if let Some(types) = batch.token_type_ids.as_mut() {
                types.push(narrow(type_id, "token type id")?);
            }
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
