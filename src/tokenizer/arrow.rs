//! Arrow in and out: the strings of an Arrow text column, read in place, and encoded rows as
//! Arrow list columns laid out as `datasets` stores the output of a tokenizer (`list<int32>`
//! input ids, `list<int8>` token type ids and attention mask).

use crate::error::{Error, Result};
use crate::rows::Rows;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int8Type};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, GenericListArray, OffsetSizeTrait, PrimitiveArray,
    RecordBatch,
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
        let values: Box<dyn Iterator<Item = Option<&str>>> = match chunk.data_type() {
            DataType::Utf8 => Box::new(chunk.as_string::<i32>().iter()),
            DataType::LargeUtf8 => Box::new(chunk.as_string::<i64>().iter()),
            DataType::Utf8View => Box::new(chunk.as_string_view().iter()),
            other => {
                return Err(Error::type_error(format!(
                    "expected a column of strings, got Arrow type {other}"
                )))
            }
        };
        for (i, value) in values.enumerate() {
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

/// The columns of `batch` as one Arrow record batch: `input_ids`, then `token_type_ids` and
/// `attention_mask` when asked for. The buffers move into Arrow without a copy; offsets are
/// 32-bit (`list`) unless the tokens outgrow them (`large_list`).
pub fn record_batch(
    batch: Rows,
    token_type_ids: bool,
    attention_mask: bool,
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
