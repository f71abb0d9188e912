//! Tokenized rows, ragged, in the flat layout of Arrow list columns and `datasets`: the one type
//! the tokenizer writes, the Trainer's data holds, and the collator and inference pad.

use crate::error::{Error, Result};
use std::ops::Range;
use tokenizers::Encoding;

/// A side for padding or truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    /// Parses "left" or "right"; `what` is "Padding" or "Truncation", as in transformers' error.
    pub fn parse(value: &str, what: &str) -> Result<Side> {
        match value {
            "left" => Ok(Side::Left),
            "right" => Ok(Side::Right),
            other => Err(Error::value(format!(
                "{what} side should be selected between 'right' and 'left', current value: {other}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
        }
    }
}

/// Padding of a batch: to a length or the longest row, rounded up to a multiple, on a side.
#[derive(Debug, Clone)]
pub struct PadTo {
    /// `None`: the longest row.
    pub length: Option<usize>,
    pub multiple: Option<usize>,
    pub side: Side,
    pub pad_id: i32,
}

/// Tokenized rows, flat: row `i` is `offsets[i]..offsets[i + 1]` of each vector. The element
/// types are those `datasets` stores these columns in (`OptimizedTypedSequence`). The tokenizer
/// always writes token type ids; data read for training has them only if its table does.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub input_ids: Vec<i32>,
    pub token_type_ids: Option<Vec<i8>>,
    pub attention_mask: Vec<i8>,
    pub offsets: Vec<usize>,
}

impl Rows {
    /// No rows; with a token type id column or without.
    pub fn empty(token_type_ids: bool) -> Rows {
        Rows {
            input_ids: Vec::new(),
            token_type_ids: token_type_ids.then(Vec::new),
            attention_mask: Vec::new(),
            offsets: vec![0],
        }
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

    /// The length of each row.
    pub fn lengths(&self) -> Vec<usize> {
        self.row_lengths().collect()
    }

    /// The token type ids, empty when the rows have none.
    pub fn type_ids(&self) -> &[i8] {
        self.token_type_ids.as_deref().unwrap_or_default()
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

    /// Appends the row of `encoding`.
    pub(crate) fn push(&mut self, encoding: &Encoding) -> Result<()> {
        for &id in encoding.get_ids() {
            self.input_ids.push(narrow(id, "token id")?);
        }
        if let Some(types) = self.token_type_ids.as_mut() {
            for &type_id in encoding.get_type_ids() {
                types.push(narrow(type_id, "token type id")?);
            }
        }
        for &mask in encoding.get_attention_mask() {
            self.attention_mask.push(narrow(mask, "attention mask")?);
        }
        self.offsets.push(self.input_ids.len());
        Ok(())
    }

    /// Appends the rows of `other`, which has the same columns.
    pub(crate) fn append(&mut self, other: Rows) {
        let base = self.input_ids.len();
        self.input_ids.extend(other.input_ids);
        if let (Some(types), Some(more)) = (self.token_type_ids.as_mut(), other.token_type_ids) {
            types.extend(more);
        }
        self.attention_mask.extend(other.attention_mask);
        self.offsets.extend(other.offsets[1..].iter().map(|o| o + base));
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Rows {
        let tokens = indices.iter().map(|&i| self.row(i).len()).sum();
        let mut out = Rows {
            input_ids: Vec::with_capacity(tokens),
            token_type_ids: self.token_type_ids.as_ref().map(|_| Vec::with_capacity(tokens)),
            attention_mask: Vec::with_capacity(tokens),
            offsets: Vec::with_capacity(indices.len() + 1),
        };
        out.offsets.push(0);
        for &i in indices {
            let row = self.row(i);
            out.input_ids.extend_from_slice(&self.input_ids[row.clone()]);
            if let (Some(types), Some(from)) = (out.token_type_ids.as_mut(), &self.token_type_ids) {
                types.extend_from_slice(&from[row.clone()]);
            }
            out.attention_mask.extend_from_slice(&self.attention_mask[row]);
            out.offsets.push(out.input_ids.len());
        }
        out
    }

    /// Pads every row shorter than the target, as tokenizers' `pad_encodings` and
    /// `Encoding::pad` do: pad id, token type 0, attention 0.
    pub fn pad(self, to: &PadTo) -> Result<Rows> {
        let mut length = to.length.unwrap_or_else(|| self.longest());
        if let Some(multiple) = to.multiple.filter(|m| *m > 0) {
            length = length.checked_next_multiple_of(multiple).ok_or_else(|| too_long(length))?;
        }
        if self.row_lengths().all(|n| n >= length) {
            return Ok(self);
        }
        // A length far beyond the data (max_length=10**12) is a MemoryError, not an abort.
        let capacity = self.len().checked_mul(length).ok_or_else(|| too_long(length))?;
        let mut out = Rows {
            input_ids: Vec::new(),
            token_type_ids: self.token_type_ids.as_ref().map(|_| Vec::new()),
            attention_mask: Vec::new(),
            offsets: Vec::with_capacity(self.offsets.len()),
        };
        let reserved = out.input_ids.try_reserve_exact(capacity).is_ok()
            && out.token_type_ids.as_mut().is_none_or(|t| t.try_reserve_exact(capacity).is_ok())
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
            let pad = |out: &mut Rows| {
                out.input_ids.extend(std::iter::repeat_n(to.pad_id, missing));
                if let Some(types) = out.token_type_ids.as_mut() {
                    types.extend(std::iter::repeat_n(0, missing));
                }
                out.attention_mask.extend(std::iter::repeat_n(0, missing));
            };
            if to.side == Side::Left {
                pad(&mut out);
            }
            out.input_ids.extend_from_slice(&self.input_ids[row.clone()]);
            if let (Some(types), Some(from)) = (out.token_type_ids.as_mut(), &self.token_type_ids) {
                types.extend_from_slice(&from[row.clone()]);
            }
            out.attention_mask.extend_from_slice(&self.attention_mask[row]);
            if to.side == Side::Right {
                pad(&mut out);
            }
            out.offsets.push(out.input_ids.len());
        }
        Ok(out)
    }
}

fn too_long(length: usize) -> Error {
    Error::Memory(format!(
        "cannot pad to {length} tokens: the size overflows; pass a smaller max_length"
    ))
}

/// A token id, type id or mask in the narrower type its column keeps.
pub(crate) fn narrow<T: TryFrom<u32>>(value: u32, what: &str) -> Result<T> {
    T::try_from(value).map_err(|_| {
        Error::value(format!("{what} {value} does not fit in {}", std::any::type_name::<T>()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: &[&[i32]]) -> Rows {
        let mut b = Rows::empty(true);
        for row in rows {
            b.input_ids.extend_from_slice(row);
            b.token_type_ids.as_mut().unwrap().extend(row.iter().map(|_| 0));
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
    fn select_gathers_rows_in_order() {
        let b = batch(&[&[1, 2], &[3], &[4, 5, 6]]);
        let s = b.select(&[2, 0, 2]);
        assert_eq!(s.input_ids, [4, 5, 6, 1, 2, 4, 5, 6]);
        assert_eq!(s.offsets, [0, 3, 5, 8]);
        assert_eq!(s.type_ids().len(), 8);
        assert_eq!(s.lengths(), [3, 2, 3]);
        let mut without = b.clone();
        without.token_type_ids = None;
        let padded = without.select(&[1]).pad(&pad_to(Some(2), None, Side::Right)).unwrap();
        assert_eq!((padded.input_ids, padded.token_type_ids), (vec![3, 9], None));
    }

    #[test]
    fn narrowing_refuses_values_out_of_range() {
        assert_eq!(narrow::<i8>(1, "mask").unwrap(), 1);
        assert!(narrow::<i8>(300, "token type id").unwrap_err().to_string().contains("300"));
    }
}
