//! Training and evaluation data: tokenized examples read once from Arrow record batches into
//! flat Rust buffers (`rows::Rows`), and batches padded to their longest example (transformers'
//! `DataCollatorWithPadding`), built as tensors without Python.

use super::masking::{LanguageModeling, IGNORED};
use crate::error::{Error, Result};
use crate::rows::{PadTo, Rows, Side};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

/// Labels of every example, by problem type.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// Class indices (single-label classification).
    Classes(Vec<i64>),
    /// One value per label per example: regression (width = num_labels, often 1) or
    /// multi-label classification (0/1 per label).
    Values { values: Vec<f32>, width: usize },
    /// One class index per token (token classification), -100 where the loss ignores it:
    /// example `i` is `ids[offsets[i]..offsets[i + 1]]`, as long as its input_ids.
    Tokens { ids: Vec<i64>, offsets: Vec<usize> },
}

impl Labels {
    pub fn len(&self) -> usize {
        match self {
            Labels::Classes(c) => c.len(),
            Labels::Values { values, width } => values.len() / (*width).max(1),
            Labels::Tokens { offsets, .. } => offsets.len() - 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labels of `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Labels {
        match self {
            Labels::Classes(c) => Labels::Classes(rows.iter().map(|&i| c[i]).collect()),
            Labels::Values { values, width } => Labels::Values {
                values: rows
                    .iter()
                    .flat_map(|&i| values[i * width..(i + 1) * width].iter().copied())
                    .collect(),
                width: *width,
            },
            Labels::Tokens { ids, offsets } => {
                let (ids, offsets) = select_flat(ids, offsets, rows);
                Labels::Tokens { ids, offsets }
            }
        }
    }

    /// As the model takes them: class ids [n] (int64), values [n] (width 1) or [n, width]
    /// (float32); per-token labels padded to `width` with `pad` on the `side` of padding,
    /// [n, width] (int64).
    pub fn to_tensor(&self, width: usize, side: Side, pad: i64) -> Tensor {
        match self {
            Labels::Classes(c) => Tensor::from_slice(c),
            Labels::Values { values, width: 1 } => Tensor::from_slice(values),
            Labels::Values { values, width } => {
                Tensor::from_slice(values).view([-1, *width as i64])
            }
            Labels::Tokens { ids, offsets } => {
                Tensor::from_slice(&pad_flat(ids, offsets, width, side, pad))
                    .view([-1, width as i64])
            }
        }
    }
}

/// Rows `rows` of a flat column whose row `i` is `values[offsets[i]..offsets[i + 1]]`, with
/// their offsets.
fn select_flat<T: Copy>(values: &[T], offsets: &[usize], rows: &[usize]) -> (Vec<T>, Vec<usize>) {
    let mut out = Vec::with_capacity(rows.iter().map(|&i| offsets[i + 1] - offsets[i]).sum());
    let mut out_offsets = Vec::with_capacity(rows.len() + 1);
    out_offsets.push(0);
    for &i in rows {
        out.extend_from_slice(&values[offsets[i]..offsets[i + 1]]);
        out_offsets.push(out.len());
    }
    (out, out_offsets)
}

/// The rows of a flat column padded with `fill` to `width` on `side`: [rows × width].
fn pad_flat<T: Copy>(values: &[T], offsets: &[usize], width: usize, side: Side, fill: T) -> Vec<T> {
    let mut out = Vec::with_capacity((offsets.len() - 1) * width);
    for w in offsets.windows(2) {
        let missing = width.saturating_sub(w[1] - w[0]);
        if side == Side::Left {
            out.extend(std::iter::repeat_n(fill, missing));
        }
        out.extend_from_slice(&values[w[0]..w[1]]);
        if side == Side::Right {
            out.extend(std::iter::repeat_n(fill, missing));
        }
    }
    out
}

/// Tokenized examples with optional labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Examples {
    /// The attention mask is all ones where the data has none.
    pub rows: Rows,
    pub labels: Option<Labels>,
    /// The tokenizer's `special_tokens_mask` (1: special), in the layout of `rows`, where the
    /// data has one and it was asked for (language modeling never masks those tokens).
    pub special_tokens_mask: Option<Vec<i8>>,
}

/// Which columns of a table make the examples, besides `input_ids`, `attention_mask` and
/// `token_type_ids`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Columns<'a> {
    /// The label column, if any.
    pub labels: Option<&'a str>,
    /// One label per token (token classification): a list column as long as `input_ids`.
    pub per_token_labels: bool,
    /// Read `special_tokens_mask` where the table has it.
    pub special_tokens_mask: bool,
}

fn integers(column: &str, array: &dyn Array, row_base: usize) -> Result<Vec<i64>> {
    macro_rules! collect {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            if a.null_count() > 0 {
                let row = (0..a.len()).find(|&i| a.is_null(i)).unwrap_or(0);
                return Err(Error::value(format!(
                    "{column} is missing (null) at row {}",
                    row_base + row
                )));
            }
            a.values().iter().map(|&v| v as i64).collect()
        }};
    }
    Ok(match array.data_type() {
        DataType::Int8 => collect!(Int8Type),
        DataType::Int16 => collect!(Int16Type),
        DataType::Int32 => collect!(Int32Type),
        DataType::Int64 => collect!(Int64Type),
        DataType::UInt8 => collect!(UInt8Type),
        DataType::UInt16 => collect!(UInt16Type),
        DataType::UInt32 => collect!(UInt32Type),
        DataType::UInt64 => collect!(UInt64Type),
        other => {
            return Err(Error::type_error(format!(
                "{column} must hold integers, got Arrow type {other}"
            )))
        }
    })
}

fn floats(column: &str, array: &dyn Array, row_base: usize) -> Result<Vec<f32>> {
    let nulls = |a: &dyn Array| -> Result<()> {
        match (0..a.len()).find(|&i| a.is_null(i)) {
            Some(row) => {
                Err(Error::value(format!("{column} is missing (null) at row {}", row_base + row)))
            }
            None => Ok(()),
        }
    };
    nulls(array)?;
    Ok(match array.data_type() {
        DataType::Float32 => array.as_primitive::<Float32Type>().values().to_vec(),
        DataType::Float64 => {
            array.as_primitive::<Float64Type>().values().iter().map(|&v| v as f32).collect()
        }
        _ => integers(column, array, row_base)?.into_iter().map(|v| v as f32).collect(),
    })
}

/// The offsets and the values of a list column chunk (list, large list or fixed-size list).
fn list_parts(column: &str, array: &ArrayRef) -> Result<(Vec<usize>, ArrayRef)> {
    Ok(match array.data_type() {
        DataType::List(_) => {
            let l = array.as_list::<i32>();
            (l.value_offsets().iter().map(|&o| o as usize).collect(), l.values().clone())
        }
        DataType::LargeList(_) => {
            let l = array.as_list::<i64>();
            (l.value_offsets().iter().map(|&o| o as usize).collect(), l.values().clone())
        }
        DataType::FixedSizeList(_, _) => {
            let l = array.as_fixed_size_list();
            let n = l.value_length() as usize;
            ((0..=l.len()).map(|i| i * n).collect(), l.values().clone())
        }
        other => {
            return Err(Error::type_error(format!(
                "{column} must be a column of lists, got Arrow type {other}"
            )))
        }
    })
}

/// Appends the rows of a list<integer> column chunk to `out`, narrowed to `T` (the type the
/// tokenizer writes the column in); returns the rows' lengths.
fn append_list<T: TryFrom<i64>>(
    column: &str,
    array: &ArrayRef,
    row_base: usize,
    out: &mut Vec<T>,
) -> Result<Vec<usize>> {
    let (offsets, values) = list_parts(column, array)?;
    if let Some(row) = (0..array.len()).find(|&i| array.is_null(i)) {
        return Err(Error::value(format!("{column} is missing (null) at row {}", row_base + row)));
    }
    let flat = integers(column, values.as_ref(), row_base)?;
    let mut lengths = Vec::with_capacity(array.len());
    for (row, w) in offsets.windows(2).enumerate() {
        for &value in &flat[w[0]..w[1]] {
            out.push(T::try_from(value).map_err(|_| {
                Error::value(format!(
                    "{column} at row {} holds {value}, outside the range of {}",
                    row_base + row,
                    std::any::type_name::<T>()
                ))
            })?);
        }
        lengths.push(w[1] - w[0]);
    }
    Ok(lengths)
}

/// Checks that a column's rows have the lengths of `input_ids`'s rows.
fn check_lengths(column: &str, lengths: &[usize], ids: &[usize], row_base: usize) -> Result<()> {
    match lengths.iter().zip(ids).position(|(a, b)| a != b) {
        Some(row) => Err(Error::value(format!(
            "{column} at row {} has {} values but input_ids has {}",
            row_base + row,
            lengths[row],
            ids[row]
        ))),
        None => Ok(()),
    }
}

/// Checks that a table with `columns` (the "dataset", the "train set", ...) is tokenized.
pub fn check_columns(columns: &[&str], what: &str) -> Result<()> {
    if columns.contains(&"input_ids") {
        return Ok(());
    }
    Err(Error::value(format!(
        "the {what} has no 'input_ids' column (columns: {}); tokenize it first, e.g. \
         dataset.map(lambda b: tokenizer(b['text'], truncation=True), batched=True)",
        columns.join(", ")
    )))
}

impl Examples {
    /// Reads the tokenized columns of `batches`: `input_ids` (required), `attention_mask`,
    /// `token_type_ids`, and the labels from `label_column` when given.
    pub fn from_record_batches(
        batches: &[RecordBatch],
        label_column: Option<&str>,
    ) -> Result<Examples> {
        Examples::read(batches, Columns { labels: label_column, ..Columns::default() })
    }

    /// Reads the tokenized columns of `batches` and those `columns` asks for.
    pub fn read(batches: &[RecordBatch], columns: Columns<'_>) -> Result<Examples> {
        let label_column = columns.labels;
        let schema = batches
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| Error::value("the dataset is empty (no rows)"))?;
        let has = |name: &str| schema.column_with_name(name).is_some();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        check_columns(&names, "dataset")?;
        if let Some(label) = label_column {
            if !has(label) {
                return Err(Error::value(format!("the dataset has no label column {label:?}")));
            }
        }
        let has_mask = has("attention_mask");
        let mut rows = Rows::empty(has("token_type_ids"));
        let mut special_tokens_mask =
            (columns.special_tokens_mask && has("special_tokens_mask")).then(Vec::new);
        let mut token_labels = Vec::new();
        let mut classes = Vec::new();
        let mut values = Vec::new();
        let mut width = 0usize;
        let mut row_base = 0;
        for (index, batch) in batches.iter().enumerate() {
            let column = |name: &str| {
                batch.column_by_name(name).ok_or_else(|| {
                    Error::value(format!(
                        "record batch {index} has no {name:?} column, unlike the first"
                    ))
                })
            };
            let ids =
                append_list("input_ids", column("input_ids")?, row_base, &mut rows.input_ids)?;
            for &n in &ids {
                rows.offsets.push(rows.offsets[rows.offsets.len() - 1] + n);
            }
            if has_mask {
                let mask = column("attention_mask")?;
                let lengths =
                    append_list("attention_mask", mask, row_base, &mut rows.attention_mask)?;
                check_lengths("attention_mask", &lengths, &ids, row_base)?;
            } else {
                rows.attention_mask.resize(rows.input_ids.len(), 1);
            }
            if let Some(types) = rows.token_type_ids.as_mut() {
                let lengths =
                    append_list("token_type_ids", column("token_type_ids")?, row_base, types)?;
                check_lengths("token_type_ids", &lengths, &ids, row_base)?;
            }
            if let Some(special) = special_tokens_mask.as_mut() {
                let mask = column("special_tokens_mask")?;
                let lengths = append_list("special_tokens_mask", mask, row_base, special)?;
                check_lengths("special_tokens_mask", &lengths, &ids, row_base)?;
            }
            if let (Some(name), true) = (label_column, columns.per_token_labels) {
                let labels = column(name)?;
                if matches!(labels.data_type(), DataType::List(t) | DataType::LargeList(t) if t.data_type().is_floating())
                {
                    return Err(Error::type_error(format!(
                        "{name} holds floats; token classification needs integer class ids per \
                         token (-100 for tokens the loss ignores)"
                    )));
                }
                let lengths = append_list(name, labels, row_base, &mut token_labels)?;
                check_lengths(name, &lengths, &ids, row_base)?;
            } else if let Some(name) = label_column {
                let labels = column(name)?;
                match labels.data_type() {
                    DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                        width = 1;
                        values.extend(floats(name, labels.as_ref(), row_base)?);
                    }
                    DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
                        let (offsets, inner) = list_parts(name, labels)?;
                        let flat = floats(name, inner.as_ref(), row_base)?;
                        for (row, w) in offsets.windows(2).enumerate() {
                            let n = w[1] - w[0];
                            if width == 0 {
                                width = n;
                            }
                            if n != width || n == 0 {
                                return Err(Error::value(format!(
                                    "{name} at row {} has {n} values but earlier rows have {width}",
                                    row_base + row
                                )));
                            }
                            values.extend_from_slice(&flat[w[0]..w[1]]);
                        }
                    }
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        return Err(Error::type_error(format!(
                            "{name} holds strings; map them to integer class ids first (e.g. with \
                             config.label2id or datasets' class_encode_column)"
                        )))
                    }
                    _ => classes.extend(integers(name, labels.as_ref(), row_base)?),
                }
            }
            row_base += batch.num_rows();
        }
        if rows.is_empty() {
            return Err(Error::value("the dataset is empty (no rows)"));
        }
        if let Some(row) = rows.lengths().iter().position(|&n| n == 0) {
            return Err(Error::value(format!("input_ids at row {row} is empty")));
        }
        let labels = match label_column {
            None => None,
            Some(_) if columns.per_token_labels => {
                Some(Labels::Tokens { ids: token_labels, offsets: rows.offsets.clone() })
            }
            Some(_) if !values.is_empty() => Some(Labels::Values { values, width }),
            Some(_) => Some(Labels::Classes(classes)),
        };
        Ok(Examples { rows, labels, special_tokens_mask })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Checks the labels against the model: classes in [0, num_labels) (or -100, ignored),
    /// finite values, `num_labels` values per example for multi-label data.
    pub fn check_labels(&self, num_labels: i64) -> Result<()> {
        match &self.labels {
            None => Ok(()),
            Some(Labels::Classes(classes)) => {
                if num_labels == 1 {
                    return Ok(()); // regression on integer targets
                }
                match classes.iter().position(|&c| c != -100 && !(0..num_labels).contains(&c)) {
                    Some(row) => Err(Error::value(format!(
                        "label {} at row {row} is outside [0, {num_labels}) (the model has num_labels={num_labels})",
                        classes[row]
                    ))),
                    None => Ok(()),
                }
            }
            Some(Labels::Tokens { ids, offsets }) => {
                let Some(i) =
                    ids.iter().position(|&c| c != IGNORED && !(0..num_labels).contains(&c))
                else {
                    return Ok(());
                };
                let row = offsets.partition_point(|&o| o <= i) - 1;
                Err(Error::value(format!(
                    "label {} at row {row} (token {}) is outside [0, {num_labels}) (the model has \
                     num_labels={num_labels}; -100 marks tokens the loss ignores)",
                    ids[i],
                    i - offsets[row]
                )))
            }
            Some(Labels::Values { values, width }) => {
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return Err(Error::value(format!(
                        "label at row {} is {} (not finite)",
                        i / width,
                        values[i]
                    )));
                }
                if *width != 1 && *width as i64 != num_labels {
                    return Err(Error::value(format!(
                        "each example has {width} label values but the model has num_labels={num_labels}"
                    )));
                }
                if *width == 1 && num_labels != 1 {
                    return Err(Error::value(format!(
                        "the labels are floats ({} at row 0) with one value per example, which needs \
                         num_labels=1 (regression); the model has num_labels={num_labels}. Use \
                         integer class ids for classification",
                        values.first().copied().unwrap_or(f32::NAN)
                    )));
                }
                Ok(())
            }
        }
    }

    pub fn lengths(&self) -> Vec<usize> {
        self.rows.lengths()
    }

    /// The examples at `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Examples {
        Examples {
            rows: self.rows.select(rows),
            labels: self.labels.as_ref().map(|labels| labels.select(rows)),
            special_tokens_mask: self
                .special_tokens_mask
                .as_ref()
                .map(|mask| select_flat(mask, &self.rows.offsets, rows).0),
        }
    }
}

/// A padded batch as tensors, with the labels when the data has them.
pub struct TensorBatch {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub token_type_ids: Option<Tensor>,
    pub labels: Option<Tensor>,
}

impl TensorBatch {
    /// The model's inputs (and labels) from this batch.
    pub fn view(&self) -> crate::models::Batch<'_> {
        crate::models::Batch {
            input_ids: &self.input_ids,
            attention_mask: Some(&self.attention_mask),
            token_type_ids: self.token_type_ids.as_ref(),
            position_ids: None,
            labels: self.labels.as_ref(),
        }
    }
}

/// transformers' data collators: `DataCollatorWithPadding` pads to the longest example of the
/// batch (rounded up to `pad_to_multiple_of`), on the right or the left;
/// `DataCollatorForTokenClassification` pads per-token labels likewise with
/// `label_pad_token_id`; `DataCollatorForLanguageModeling` makes the labels from the inputs.
#[derive(Debug, Clone)]
pub struct Collator {
    pad: PadTo,
    labeling: Labeling,
}

/// How a batch is padded, as the tokenizer says (`pad_token_id`, `padding_side`) and the data
/// collator rounds (`pad_to_multiple_of`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PadSettings {
    /// None: the model config's `pad_token_id`, else 0.
    pub pad_token_id: Option<i64>,
    pub pad_left: bool,
    pub pad_to_multiple_of: Option<usize>,
}

/// What a collator does besides padding to the longest example: the settings of
/// `DataCollatorForTokenClassification` and `DataCollatorForLanguageModeling`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labeling {
    /// `padding="max_length"`: every row padded to this length (none is truncated).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// The id per-token labels are padded with.
    #[serde(default = "ignored")]
    pub label_pad_token_id: i64,
    /// Labels made from the inputs (masked or causal language modeling).
    #[serde(default)]
    pub language_modeling: Option<LanguageModeling>,
}

fn ignored() -> i64 {
    IGNORED
}

impl Default for Labeling {
    fn default() -> Labeling {
        Labeling { max_length: None, label_pad_token_id: IGNORED, language_modeling: None }
    }
}

impl Collator {
    /// The collator of `pad` for a model whose config pads with `config_pad_token_id`.
    pub fn new(pad: PadSettings, config_pad_token_id: Option<i64>) -> Result<Collator> {
        let pad_id = pad.pad_token_id.or(config_pad_token_id).unwrap_or(0);
        Ok(Collator {
            pad: PadTo {
                length: None,
                multiple: pad.pad_to_multiple_of,
                side: if pad.pad_left { Side::Left } else { Side::Right },
                pad_id: i32::try_from(pad_id).map_err(|_| {
                    Error::value(format!("pad_token_id {pad_id} is outside the range of token ids"))
                })?,
            },
            labeling: Labeling::default(),
        })
    }

    /// This collator with `labeling`'s settings (checked).
    pub fn with_labeling(mut self, labeling: Labeling) -> Result<Collator> {
        if let Some(lm) = &labeling.language_modeling {
            lm.check()?;
        }
        self.pad.length = labeling.max_length;
        self.labeling = labeling;
        Ok(self)
    }

    /// Whether batches draw random numbers (masked language modeling) and labels come from
    /// the collator rather than the data.
    pub fn makes_labels(&self) -> bool {
        self.labeling.language_modeling.is_some()
    }

    /// The batch of the examples `indices` of `data`, on `device`. Masked language modeling
    /// draws from torch's default generator.
    pub fn collate(
        &self,
        data: &Examples,
        indices: &[usize],
        device: Device,
    ) -> Result<TensorBatch> {
        let rows = data.rows.select(indices).pad(&self.pad)?;
        let Some(width) = rows.width() else {
            let row = rows.lengths().iter().position(|&n| n > self.pad.length.unwrap_or(0));
            return Err(Error::value(format!(
                "example {} has {} tokens, more than max_length={}; truncate the examples when \
                 tokenizing (truncation=True, max_length=...)",
                indices[row.unwrap_or(0)],
                rows.longest(),
                self.pad.length.unwrap_or(0)
            )));
        };
        let shape = [indices.len() as i64, width as i64];
        let tensor = |t: Tensor| t.to_kind(Kind::Int64).view(shape);
        let mut input_ids = tensor(Tensor::from_slice(&rows.input_ids));
        let labels = match (&self.labeling.language_modeling, &data.labels) {
            (Some(lm), _) => {
                let special = match &data.special_tokens_mask {
                    Some(mask) => {
                        let (mask, offsets) = select_flat(mask, &data.rows.offsets, indices);
                        tensor(Tensor::from_slice(&pad_flat(
                            &mask,
                            &offsets,
                            width,
                            self.pad.side,
                            1,
                        )))
                        .to_kind(Kind::Bool)
                    }
                    None => lm.special_tokens(&input_ids)?,
                };
                let (inputs, labels) = lm.inputs_and_labels(&input_ids, &special)?;
                input_ids = inputs;
                Some(labels)
            }
            (None, Some(labels)) => Some(labels.select(indices).to_tensor(
                width,
                self.pad.side,
                self.labeling.label_pad_token_id,
            )),
            (None, None) => None,
        };
        Ok(TensorBatch {
            input_ids: input_ids.to_device(device),
            attention_mask: tensor(Tensor::from_slice(&rows.attention_mask)).to_device(device),
            token_type_ids: rows
                .token_type_ids
                .as_deref()
                .map(|t| tensor(Tensor::from_slice(t)).to_device(device)),
            labels: labels.map(|l| l.to_device(device)),
        })
    }
}

/// Kind of the label tensor a dataset produces (for problem-type inference).
pub fn label_kind(labels: &Labels) -> Kind {
    match labels {
        Labels::Classes(_) => Kind::Int64,
        Labels::Values { .. } => Kind::Float,
        Labels::Tokens { .. } => Kind::Int64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{Int32Builder, ListBuilder};
    use arrow_array::{Float32Array, Int64Array};
    use std::sync::Arc;

    fn list_column(rows: &[&[i32]]) -> ArrayRef {
        let mut b = ListBuilder::new(Int32Builder::new());
        for row in rows {
            b.values().append_slice(row);
            b.append(true);
        }
        Arc::new(b.finish())
    }

    fn batch(ids: &[&[i32]], labels: ArrayRef) -> RecordBatch {
        RecordBatch::try_from_iter([("input_ids", list_column(ids)), ("labels", labels)]).unwrap()
    }

    #[test]
    fn reads_chunks_and_pads_to_the_longest() {
        let b1 = batch(&[&[101, 7, 102], &[101, 102]], Arc::new(Int64Array::from(vec![1, 0])));
        let b2 = batch(&[&[101, 5, 6, 7, 102]], Arc::new(Int64Array::from(vec![1])));
        let data = Examples::from_record_batches(&[b1, b2], Some("labels")).unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data.lengths(), vec![3, 2, 5]);
        data.check_labels(2).unwrap();
        let collator = Collator::new(PadSettings::default(), None).unwrap();
        let t = collator.collate(&data, &[1, 0], Device::Cpu).unwrap();
        assert_eq!(t.input_ids.size(), vec![2, 3]);
        assert_eq!(
            Vec::<i64>::try_from(t.input_ids.view([-1])).unwrap(),
            vec![101, 102, 0, 101, 7, 102]
        );
        assert_eq!(
            Vec::<i64>::try_from(t.attention_mask.view([-1])).unwrap(),
            vec![1, 1, 0, 1, 1, 1]
        );
        assert_eq!(Vec::<i64>::try_from(t.labels.unwrap()).unwrap(), vec![0, 1]);
        let pad = PadSettings { pad_to_multiple_of: Some(4), pad_left: true, pad_token_id: None };
        let padded = Collator::new(pad, None).unwrap().collate(&data, &[1], Device::Cpu).unwrap();
        assert_eq!(
            Vec::<i64>::try_from(padded.input_ids.view([-1])).unwrap(),
            vec![0, 0, 101, 102]
        );
    }

    #[test]
    fn bad_labels_name_the_row() {
        let b = batch(&[&[1], &[2], &[3]], Arc::new(Int64Array::from(vec![0, 1, 2])));
        let data = Examples::from_record_batches(&[b], Some("labels")).unwrap();
        let err = data.check_labels(2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "label 2 at row 2 is outside [0, 2) (the model has num_labels=2)"
        );
        let b = batch(&[&[1], &[2]], Arc::new(Float32Array::from(vec![0.5, f32::NAN])));
        let data = Examples::from_record_batches(&[b], Some("labels")).unwrap();
        assert_eq!(
            data.check_labels(1).unwrap_err().to_string(),
            "label at row 1 is NaN (not finite)"
        );
    }

    #[test]
    fn columns_are_read_into_the_tokenizer_types_with_errors_naming_the_row() {
        let ids = list_column(&[&[101, 7, 102], &[101, 102]]);
        let mask = list_column(&[&[1, 1, 1], &[1, 1]]);
        let b = RecordBatch::try_from_iter([("input_ids", ids.clone()), ("attention_mask", mask)])
            .unwrap();
        let data = Examples::from_record_batches(&[b], None).unwrap();
        assert_eq!(data.rows.input_ids, [101, 7, 102, 101, 102]);
        assert_eq!(data.rows.offsets, [0, 3, 5]);
        assert_eq!(data.rows.token_type_ids, None);
        let short = list_column(&[&[1, 1, 1], &[1]]);
        let b = RecordBatch::try_from_iter([("input_ids", ids.clone()), ("attention_mask", short)])
            .unwrap();
        assert_eq!(
            Examples::from_record_batches(&[b], None).unwrap_err().to_string(),
            "attention_mask at row 1 has 1 values but input_ids has 2"
        );
        let types = list_column(&[&[0, 0, 0], &[0, 300]]);
        let b =
            RecordBatch::try_from_iter([("input_ids", ids), ("token_type_ids", types)]).unwrap();
        assert_eq!(
            Examples::from_record_batches(&[b], None).unwrap_err().to_string(),
            "token_type_ids at row 1 holds 300, outside the range of i8"
        );
        let no_mask = batch(&[&[5, 6], &[7]], Arc::new(Int64Array::from(vec![0, 1])));
        let data = Examples::from_record_batches(&[no_mask], Some("labels")).unwrap();
        assert_eq!(data.rows.attention_mask, [1, 1, 1]);
        let picked = data.select(&[1, 1]);
        assert_eq!(
            (picked.rows.input_ids, picked.labels),
            (vec![7, 7], Some(Labels::Classes(vec![1, 1])))
        );
    }

    #[test]
    fn per_token_labels_are_padded_on_the_padding_side_and_checked_by_row() {
        let ids = list_column(&[&[101, 7, 102], &[101, 102]]);
        let labels = list_column(&[&[-100, 3, -100], &[-100, -100]]);
        let b =
            RecordBatch::try_from_iter([("input_ids", ids.clone()), ("labels", labels)]).unwrap();
        let columns =
            Columns { labels: Some("labels"), per_token_labels: true, ..Columns::default() };
        let data = Examples::read(&[b], columns).unwrap();
        data.check_labels(4).unwrap();
        assert_eq!(
            data.check_labels(3).unwrap_err().to_string(),
            "label 3 at row 0 (token 1) is outside [0, 3) (the model has num_labels=3; -100 \
             marks tokens the loss ignores)"
        );
        let pad = PadSettings { pad_left: true, ..PadSettings::default() };
        let labeling = Labeling { label_pad_token_id: -1, ..Labeling::default() };
        let collator = Collator::new(pad, None).unwrap().with_labeling(labeling).unwrap();
        let t = collator.collate(&data, &[1, 0], Device::Cpu).unwrap();
        assert_eq!(
            Vec::<i64>::try_from(t.labels.unwrap().view([-1])).unwrap(),
            [-1, -100, -100, -100, 3, -100]
        );
        let short = list_column(&[&[0, 0, 0], &[0]]);
        let b = RecordBatch::try_from_iter([("input_ids", ids), ("labels", short)]).unwrap();
        assert_eq!(
            Examples::read(&[b], columns).unwrap_err().to_string(),
            "labels at row 1 has 1 values but input_ids has 2"
        );
    }

    #[test]
    fn language_modeling_masks_neither_special_tokens_nor_padding() {
        let ids = list_column(&[&[2, 7, 8, 3], &[2, 9]]);
        let special = list_column(&[&[1, 0, 1, 1], &[1, 0]]);
        let b = RecordBatch::try_from_iter([("input_ids", ids), ("special_tokens_mask", special)])
            .unwrap();
        let columns = Columns { special_tokens_mask: true, ..Columns::default() };
        let data = Examples::read(&[b], columns).unwrap();
        let lm = LanguageModeling {
            mlm: true,
            mlm_probability: 1.0,
            mask_replace_prob: 1.0,
            random_replace_prob: 0.0,
            mask_token_id: Some(4),
            vocab_size: 10,
            special_ids: vec![0, 2, 3, 4],
            pad_token_id: Some(0),
        };
        let labeling = Labeling { language_modeling: Some(lm), ..Labeling::default() };
        let collator =
            Collator::new(PadSettings::default(), None).unwrap().with_labeling(labeling).unwrap();
        let t = collator.collate(&data, &[0, 1], Device::Cpu).unwrap();
        let flat = |t: Tensor| Vec::<i64>::try_from(t.view([-1])).unwrap();
        // Every token that may be masked is (probability 1); the mask says 8 is special.
        assert_eq!(flat(t.input_ids), [2, 4, 8, 3, 2, 4, 0, 0]);
        assert_eq!(flat(t.labels.unwrap()), [-100, 7, -100, -100, -100, 9, -100, -100]);
    }

    #[test]
    fn missing_columns_are_value_errors() {
        let b =
            RecordBatch::try_from_iter([("text", Arc::new(Int64Array::from(vec![1])) as ArrayRef)])
                .unwrap();
        let err = Examples::from_record_batches(&[b], None).unwrap_err();
        assert!(
            err.to_string().starts_with("the dataset has no 'input_ids' column (columns: text)"),
            "{err}"
        );
        let b = batch(&[&[1]], Arc::new(Int64Array::from(vec![1])));
        let err = Examples::from_record_batches(&[b], Some("label")).unwrap_err();
        assert_eq!(err.to_string(), "the dataset has no label column \"label\"");
        assert!(Examples::from_record_batches(&[], None).is_err());
    }
}
