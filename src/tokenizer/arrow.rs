//! Arrow in and out: the strings of an Arrow text column (or the words of a column of word
//! lists), read in place, and encoded rows as Arrow list columns laid out as `datasets` stores
//! the output of a tokenizer (`list<int32>` input ids, `list<int8>` token type ids, attention
//! mask and special-tokens mask, `list<fixed_size_list<int32, 2>>` offsets), with the word ids
//! as a `list<int32>` column whose special and pad tokens are null.

use super::details::Details;
use crate::error::{Error, Result};
use crate::rows::Rows;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int8Type};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, FixedSizeListArray, GenericListArray, Int32Array,
    OffsetSizeTrait, PrimitiveArray, RecordBatch,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema};
use std::sync::Arc;

/// The strings of a text column given as Arrow chunks (`string`, `large_string` or
/// `string_view`), borrowed from the Arrow buffers. A null row is a TypeError naming its index.
pub fn strings(chunks: &[ArrayRef]) -> Result<Vec<&str>> {
    let mut texts = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
    for chunk in chunks {
        let first_row = texts.len();
        for (i, value) in optional_strings(chunk)?.into_iter().enumerate() {
            texts.push(value.ok_or_else(|| {
                Error::type_error(format!(
                    "text at index {} is null (None), expected str",
                    first_row + i
                ))
            })?);
        }
    }
    Ok(texts)
}

/// The values of a `string`, `large_string` or `string_view` array, None where null.
fn optional_strings(array: &ArrayRef) -> Result<Vec<Option<&str>>> {
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
        DataType::Utf8View => array.as_string_view().iter().collect(),
        other => {
            return Err(Error::type_error(format!(
                "expected a column of strings, got Arrow type {other}"
            )))
        }
    })
}

/// The words of each row of a column of word lists (`list` or `large_list` of strings),
/// borrowed from the Arrow buffers (`is_split_into_words`). A null row or word, or a column of
/// plain strings, is a TypeError naming the row, as for Python lists.
pub fn word_rows(chunks: &[ArrayRef]) -> Result<Vec<Vec<&str>>> {
    let mut rows = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
    for chunk in chunks {
        match chunk.data_type() {
            DataType::List(_) => push_word_rows(chunk.as_list::<i32>(), &mut rows)?,
            DataType::LargeList(_) => push_word_rows(chunk.as_list::<i64>(), &mut rows)?,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                return Err(Error::type_error(format!(
                    "text at index {} is a str; with is_split_into_words=True each row is a \
                     list of words (an Arrow list<string> column)",
                    rows.len()
                )))
            }
            other => {
                return Err(Error::type_error(format!(
                    "expected a column of word lists (list<string>) with \
                     is_split_into_words=True, got Arrow type {other}"
                )))
            }
        }
    }
    Ok(rows)
}

fn push_word_rows<'a, O: OffsetSizeTrait>(
    lists: &'a GenericListArray<O>,
    rows: &mut Vec<Vec<&'a str>>,
) -> Result<()> {
    let words = optional_strings(lists.values())?;
    for (i, ends) in lists.offsets().windows(2).enumerate() {
        let row = rows.len();
        if lists.is_null(i) {
            return Err(Error::type_error(format!(
                "text at index {row} is null (None), expected a list of words"
            )));
        }
        let row_words = words[ends[0].as_usize()..ends[1].as_usize()].iter().enumerate();
        rows.push(
            row_words
                .map(|(j, word)| {
                    word.ok_or_else(|| {
                        Error::type_error(format!(
                            "text at index {row}: word at index {j} is null (None), expected str"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        );
    }
    Ok(())
}

/// Which per-token details `record_batch` adds after the ids (`Details` of the rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetailColumns {
    pub word_ids: bool,
    pub special_tokens_mask: bool,
    pub offset_mapping: bool,
}

/// The columns of `batch` as one Arrow record batch: `input_ids`, then `token_type_ids` and
/// `attention_mask` when asked for, then the asked columns of `details` (the rows' details,
/// padded as the rows are). The id buffers move into Arrow without a copy; offsets are 32-bit
/// (`list`) unless the tokens outgrow them (`large_list`).
pub fn record_batch(
    batch: Rows,
    token_type_ids: bool,
    attention_mask: bool,
    details: Option<(&Details, DetailColumns)>,
) -> Result<RecordBatch> {
    let Rows { input_ids, token_type_ids: type_ids, attention_mask: mask, offsets } = batch;
    let mut columns: Vec<(&str, ArrayRef)> = Vec::new();
    let fits_32_bits = i32::try_from(input_ids.len()).is_ok();
    let list = |values: ArrayRef| -> Result<ArrayRef> {
        if fits_32_bits {
            list_array::<i32>(&offsets, values)
        } else {
            list_array::<i64>(&offsets, values)
        }
    };
    columns.push(("input_ids", list(primitive::<Int32Type>(input_ids))?));
    if token_type_ids {
        let type_ids = type_ids.unwrap_or_else(|| vec![0; mask.len()]);
        columns.push(("token_type_ids", list(primitive::<Int8Type>(type_ids))?));
    }
    if attention_mask {
        columns.push(("attention_mask", list(primitive::<Int8Type>(mask))?));
    }
    if let Some((details, asked)) = details {
        if asked.word_ids {
            let ids: Int32Array =
                details.word_ids.iter().flatten().map(|w| w.map(|w| w as i32)).collect();
            columns.push(("word_ids", list(Arc::new(ids))?));
        }
        if asked.special_tokens_mask {
            let mask = details.special_tokens_mask.iter().flatten().map(|&m| m as i8).collect();
            columns.push(("special_tokens_mask", list(primitive::<Int8Type>(mask))?));
        }
        if asked.offset_mapping {
            let flat: Vec<i32> =
                details.offsets.iter().flatten().flat_map(|&(a, b)| [a as i32, b as i32]).collect();
            let item = Arc::new(Field::new("item", DataType::Int32, true));
            let pairs = FixedSizeListArray::try_new(item, 2, primitive::<Int32Type>(flat), None)
                .map_err(|e| Error::Other(format!("building the Arrow offsets: {e}")))?;
            columns.push(("offset_mapping", list(Arc::new(pairs))?));
        }
    }
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, array)| array).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| Error::Other(format!("building the Arrow record batch: {e}")))
}

fn primitive<T: ArrowPrimitiveType>(values: Vec<T::Native>) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(values.into(), None))
}

fn list_array<O: OffsetSizeTrait>(offsets: &[usize], values: ArrayRef) -> Result<ArrayRef> {
    let offsets: Vec<O> = offsets
        .iter()
        .map(|&o| {
            O::from_usize(o).ok_or_else(|| Error::value(format!("list offset {o} overflows")))
        })
        .collect::<Result<_>>()?;
    // pyarrow's `pa.list_(pa.int32())` names its item field "item", nullable.
    let item = Arc::new(Field::new("item", values.data_type().clone(), true));
    let array =
        GenericListArray::<O>::try_new(item, OffsetBuffer::new(offsets.into()), values, None)
            .map_err(|e| Error::Other(format!("building an Arrow list array: {e}")))?;
    Ok(Arc::new(array))
}
