//! What a tokenizer call asks for (transformers' `padding`, `truncation`, `max_length`, ...) and
//! the plan it resolves to, with the rules of transformers'
//! `PreTrainedTokenizerBase._get_padding_truncation_strategies`.

use super::Tokenizer;
use crate::error::{Error, Result};
use crate::rows::{narrow, PadTo, Side};
use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};

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
    pub(super) add_special_tokens: bool,
    pub(super) truncation: Option<TruncationParams>,
    pub(super) padding: Option<PadTo>,
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
        let pad_id = pad_id.map(|id| narrow::<i32>(id, "pad token id")).transpose()?;
        let padding = pad_id.map(|pad_id| PadTo {
            length: if padding == Padding::MaxLength { max_length } else { None },
            multiple: request.pad_to_multiple_of,
            side: request.padding_side.unwrap_or(self.padding_side),
            pad_id,
        });
        Ok(Plan { add_special_tokens: request.add_special_tokens, truncation, padding })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
