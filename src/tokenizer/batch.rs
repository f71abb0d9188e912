//! Encoded rows in the flat layout that `datasets` and Arrow columns use, and their padding.

use super::config::Side;
use crate::error::{Error, Result};
use std::ops::Range;
use tokenizers::Encoding;

/// Padding of a batch: to a length or the longest row, rounded up to a multiple, on a side.
#[derive(Debug, Clone)]
pub(crate) struct PadTo {
    /// `None`: the longest row.
    pub(crate) length: Option<usize>,
    pub(crate) multiple: Option<usize>,
    pub(crate) side: Side,
    pub(crate) pad_id: u32,
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
    pub(crate) fn empty() -> Batch {
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

    pub(crate) fn append(&mut self, other: Batch) {
        let base = self.input_ids.len();
        self.input_ids.extend(other.input_ids);
        self.token_type_ids.extend(other.token_type_ids);
        self.attention_mask.extend(other.attention_mask);
        self.offsets.extend(other.offsets[1..].iter().map(|o| o + base));
    }

    /// Pads every row shorter than the target, as tokenizers' `pad_encodings` and
    /// `Encoding::pad` do: pad id, token type 0, attention 0.
    pub(crate) fn pad(self, to: &PadTo) -> Result<Batch> {
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
    fn narrowing_refuses_values_out_of_range() {
        assert_eq!(narrow::<i8>(1, "mask").unwrap(), 1);
        assert!(narrow::<i8>(300, "token type id").unwrap_err().to_string().contains("300"));
    }
}
