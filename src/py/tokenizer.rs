//! `ferrotune._core.Tokenizer`: the bindings of `crate::tokenizer`. Arguments arrive with
//! transformers' names and types; texts are borrowed from the Python strings or the Arrow
//! buffers, and the GIL is released while the core encodes or decodes.

use super::errors::guard;
use super::tensor::PyTensor;
use crate::rows::Rows;
use crate::tokenizer::{arrow, Details, Padding, Request, Sequence, Side, Tokenizer, Truncation};
use arrow_array::ArrayRef;
use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use pyo3_arrow::input::AnyArray;
use pyo3_arrow::PyTable;
use std::collections::HashMap;
use std::path::PathBuf;

#[pyclass(name = "Tokenizer", module = "ferrotune._core")]
pub struct PyTokenizer {
    pub(super) inner: Tokenizer,
}

/// Texts as the core reads them: Python strings (kept alive here) or Arrow string chunks.
pub(super) enum Texts<'py> {
    Python(Vec<Bound<'py, PyString>>),
    Arrow(Vec<ArrayRef>),
}

impl<'py> Texts<'py> {
    /// A list (or other iterable) of str; anything else at some index is a TypeError naming it.
    fn from_sequence(items: &Bound<'py, PyAny>, what: &str) -> PyResult<Texts<'py>> {
        let mut texts = Vec::with_capacity(items.len().unwrap_or(0));
        for (i, item) in items.try_iter()?.enumerate() {
            let item = item?;
            match item.cast_into::<PyString>() {
                Ok(text) => texts.push(text),
                Err(e) => {
                    let item = e.into_inner();
                    let kind = if item.is_none() {
                        "is None".to_string()
                    } else {
                        format!("has type {}", item.get_type().name()?)
                    };
                    return Err(PyTypeError::new_err(format!(
                        "{what} at index {i} {kind}, expected str"
                    )));
                }
            }
        }
        Ok(Texts::Python(texts))
    }

    /// An Arrow array or chunked array (through the Arrow PyCapsule interface), or a sequence.
    pub(super) fn from_column(column: &Bound<'py, PyAny>, what: &str) -> PyResult<Texts<'py>> {
        match arrow_chunks(column)? {
            Some(chunks) => Ok(Texts::Arrow(chunks)),
            None => Texts::from_sequence(column, what),
        }
    }

    /// The strings, borrowed (Python strings give their UTF-8 form).
    pub(super) fn strs(&self) -> PyResult<Vec<&str>> {
        match self {
            Texts::Python(texts) => texts.iter().map(|text| text.to_str()).collect(),
            Texts::Arrow(chunks) => Ok(arrow::strings(chunks)?),
        }
    }
}

/// The chunks of an Arrow array or chunked array (through the Arrow PyCapsule interface);
/// None for other objects.
fn arrow_chunks(column: &Bound<'_, PyAny>) -> PyResult<Option<Vec<ArrayRef>>> {
    let py = column.py();
    if column.hasattr(intern!(py, "__arrow_c_stream__"))?
        || column.hasattr(intern!(py, "__arrow_c_array__"))?
    {
        let (chunks, _field) = column.extract::<AnyArray>()?.into_chunked_array()?.into_inner();
        Ok(Some(chunks))
    } else {
        Ok(None)
    }
}

/// The rows of a call with their details: texts, or lists of words (`is_split_into_words`)
/// from Python lists or from an Arrow column of word lists.
enum Inputs<'py> {
    Texts(Texts<'py>),
    Words(Vec<Texts<'py>>),
    WordColumn(Vec<ArrayRef>),
}

impl<'py> Inputs<'py> {
    /// A list of rows, each a list (or tuple) of str.
    fn words(items: &Bound<'py, PyAny>, what: &str) -> PyResult<Inputs<'py>> {
        let mut rows = Vec::with_capacity(items.len().unwrap_or(0));
        for (i, row) in items.try_iter()?.enumerate() {
            let row = row?;
            if row.is_instance_of::<PyString>() {
                return Err(PyTypeError::new_err(format!(
                    "{what} at index {i} is a str; with is_split_into_words=True each row is a \
                     list of words"
                )));
            }
            rows.push(Texts::from_sequence(&row, &format!("{what} at index {i}: word"))?);
        }
        Ok(Inputs::Words(rows))
    }

    /// A column (Arrow or a sequence) of texts, or of word lists with `is_split_into_words`.
    fn column(items: &Bound<'py, PyAny>, what: &str, words: bool) -> PyResult<Inputs<'py>> {
        if !words {
            return Ok(Inputs::Texts(Texts::from_column(items, what)?));
        }
        match arrow_chunks(items)? {
            Some(chunks) => Ok(Inputs::WordColumn(chunks)),
            None => Inputs::words(items, what),
        }
    }

    fn sequences(&self) -> PyResult<Vec<Sequence<'_>>> {
        match self {
            Inputs::Texts(texts) => Ok(texts.strs()?.into_iter().map(Sequence::Text).collect()),
            Inputs::Words(rows) => {
                rows.iter().map(|row| Ok(Sequence::Words(row.strs()?))).collect()
            }
            Inputs::WordColumn(chunks) => {
                Ok(arrow::word_rows(chunks)?.into_iter().map(Sequence::Words).collect())
            }
        }
    }
}

/// `offset_mapping`: per row a list of (start, end), or a (rows, length, 2) int64 tensor or
/// array when the rows have one length and tensors were asked for.
fn offsets<'py>(
    py: Python<'py>,
    rows: &Rows,
    details: &Details,
    return_tensors: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    if let (Some(kind), Some(width)) = (return_tensors, rows.width()) {
        let flat: Vec<i64> =
            details.offsets.iter().flatten().flat_map(|&(a, b)| [a as i64, b as i64]).collect();
        let shape = [rows.len(), width, 2];
        if kind == "np" {
            return Ok(PyArray1::from_vec(py, flat).reshape(shape)?.into_any());
        }
        let tensor = tch::Tensor::from_slice(&flat).view([shape[0] as i64, shape[1] as i64, 2]);
        return PyTensor(tensor).into_pyobject(py);
    }
    Ok(PyList::new(py, &details.offsets)?.into_any())
}

/// transformers' `padding`: a bool or a `PaddingStrategy` name (None: no padding).
fn padding(value: &Bound<'_, PyAny>) -> PyResult<Padding> {
    if value.is_none() {
        return Ok(Padding::DoNotPad);
    }
    if let Ok(flag) = value.extract::<bool>() {
        return Ok(if flag { Padding::Longest } else { Padding::DoNotPad });
    }
    match value.extract::<String>() {
        Ok(name) => Ok(Padding::parse(&name)?),
        Err(_) => Err(PyTypeError::new_err(format!(
            "padding must be a bool or one of 'longest', 'max_length', 'do_not_pad', got {}",
            value.get_type().name()?
        ))),
    }
}

/// transformers' `truncation`: None, a bool or a `TruncationStrategy` name.
fn truncation(value: &Bound<'_, PyAny>) -> PyResult<Option<Truncation>> {
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(flag) = value.extract::<bool>() {
        return Ok(Some(if flag { Truncation::LongestFirst } else { Truncation::DoNotTruncate }));
    }
    match value.extract::<String>() {
        Ok(name) => Ok(Some(Truncation::parse(&name)?)),
        Err(_) => Err(PyTypeError::new_err(format!(
            "truncation must be None, a bool or one of 'longest_first', 'only_first', \
             'only_second', 'do_not_truncate', got {}",
            value.get_type().name()?
        ))),
    }
}

/// The request of a call; a missing `padding` is `False`, a missing `truncation` is `None`.
pub(super) fn request(
    add_special_tokens: bool,
    padding_arg: Option<&Bound<'_, PyAny>>,
    truncation_arg: Option<&Bound<'_, PyAny>>,
    max_length: Option<usize>,
    pad_to_multiple_of: Option<usize>,
    padding_side: Option<&str>,
) -> PyResult<Request> {
    Ok(Request {
        add_special_tokens,
        padding: padding_arg.map(padding).transpose()?.unwrap_or(Padding::DoNotPad),
        truncation: truncation_arg.map(truncation).transpose()?.flatten(),
        max_length,
        pad_to_multiple_of,
        padding_side: padding_side.map(|side| Side::parse(side, "Padding")).transpose()?,
    })
}

/// One output column: a list of lists of ints, or, when the rows have one length and tensors
/// were asked for, an int64 torch.Tensor or numpy array of shape (rows, length). Ragged rows
/// stay lists, for the caller to report or convert as transformers does.
fn column<'py, T>(
    py: Python<'py>,
    batch: &Rows,
    values: &[T],
    return_tensors: Option<&str>,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Copy + Into<i64> + IntoPyObject<'py>,
{
    if let (Some(kind), Some(width)) = (return_tensors, batch.width()) {
        let flat: Vec<i64> = values.iter().map(|&v| v.into()).collect();
        let shape = [batch.len(), width];
        // "np" or "pt", as `tokenization._tensor_kind` checked.
        if kind == "np" {
            return Ok(PyArray1::from_vec(py, flat).reshape(shape)?.into_any());
        }
        let tensor = tch::Tensor::from_slice(&flat).view([shape[0] as i64, shape[1] as i64]);
        return PyTensor(tensor).into_pyobject(py);
    }
    let rows = PyList::empty(py);
    for i in 0..batch.len() {
        rows.append(PyList::new(py, values[batch.row(i)].iter().copied())?)?;
    }
    Ok(rows.into_any())
}

fn outputs<'py>(
    py: Python<'py>,
    batch: &Rows,
    return_tensors: Option<&str>,
    token_type_ids: bool,
    attention_mask: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("input_ids", column(py, batch, &batch.input_ids, return_tensors)?)?;
    if token_type_ids {
        dict.set_item("token_type_ids", column(py, batch, batch.type_ids(), return_tensors)?)?;
    }
    if attention_mask {
        dict.set_item("attention_mask", column(py, batch, &batch.attention_mask, return_tensors)?)?;
    }
    Ok(dict)
}

/// The tokens, word ids and sequence ids of encoded rows, kept in Rust and read a row at a time
/// (`BatchEncoding.word_ids(i)`, ...).
#[pyclass(name = "Details", module = "ferrotune._core", frozen)]
pub struct PyDetails {
    inner: Details,
}

impl PyDetails {
    fn row<T>(rows: &[Vec<T>], index: isize) -> PyResult<&[T]> {
        // Negative indices count from the end, as in Python.
        let at = if index < 0 { rows.len() as isize + index } else { index };
        usize::try_from(at).ok().and_then(|i| rows.get(i)).map(Vec::as_slice).ok_or_else(|| {
            pyo3::exceptions::PyIndexError::new_err(format!(
                "batch_index {index} is out of range for {} rows",
                rows.len()
            ))
        })
    }
}

#[pymethods]
impl PyDetails {
    fn __len__(&self) -> usize {
        self.inner.tokens.len()
    }

    fn tokens(&self, batch_index: isize) -> PyResult<Vec<String>> {
        Ok(Self::row(&self.inner.tokens, batch_index)?.to_vec())
    }

    fn word_ids(&self, batch_index: isize) -> PyResult<Vec<Option<u32>>> {
        Ok(Self::row(&self.inner.word_ids, batch_index)?.to_vec())
    }

    fn sequence_ids(&self, batch_index: isize) -> PyResult<Vec<Option<usize>>> {
        Ok(Self::row(&self.inner.sequence_ids, batch_index)?.to_vec())
    }
}

#[pymethods]
impl PyTokenizer {
    /// Loads the tokenizer of a local folder; `overrides` (a JSON object) win over its files.
    #[staticmethod]
    #[pyo3(signature = (path, overrides=None))]
    fn from_folder(py: Python<'_>, path: PathBuf, overrides: Option<&str>) -> PyResult<Self> {
        let overrides = match overrides {
            Some(text) => match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => return Err(PyTypeError::new_err("overrides must be a JSON object")),
            },
            None => serde_json::Map::new(),
        };
        let inner = py.detach(|| guard(|| Tokenizer::from_folder_with(&path, &overrides)))?;
        Ok(PyTokenizer { inner })
    }

    /// The transformers class this tokenizer behaves as.
    #[getter]
    fn tokenizer_class(&self) -> &'static str {
        self.inner.family().class_name().unwrap_or("PreTrainedTokenizerFast")
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn get_model_max_length(&self) -> Option<usize> {
        self.inner.model_max_length
    }

    /// Any number: above transformers' `LARGE_INTEGER`, no limit.
    #[setter]
    fn set_model_max_length(&mut self, value: f64) -> PyResult<()> {
        self.inner.model_max_length = crate::tokenizer::config::max_length_limit(value)?;
        Ok(())
    }

    #[getter]
    fn get_padding_side(&self) -> &'static str {
        self.inner.padding_side.as_str()
    }

    #[setter]
    fn set_padding_side(&mut self, value: &str) -> PyResult<()> {
        self.inner.padding_side = Side::parse(value, "Padding")?;
        Ok(())
    }

    #[getter]
    fn get_truncation_side(&self) -> &'static str {
        self.inner.truncation_side.as_str()
    }

    #[setter]
    fn set_truncation_side(&mut self, value: &str) -> PyResult<()> {
        self.inner.truncation_side = Side::parse(value, "Truncation")?;
        Ok(())
    }

    #[getter]
    fn model_input_names(&self) -> Vec<String> {
        self.inner.model_input_names().to_vec()
    }

    #[getter]
    fn clean_up_tokenization_spaces(&self) -> bool {
        self.inner.clean_up_tokenization_spaces()
    }

    /// The named special tokens that are set, in transformers' order.
    #[getter]
    fn special_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, token) in self.inner.special_tokens() {
            dict.set_item(name, token)?;
        }
        Ok(dict)
    }

    #[getter]
    fn extra_special_tokens(&self) -> Vec<String> {
        self.inner.extra_special_tokens().map(str::to_string).collect()
    }

    #[getter]
    fn all_special_tokens(&self) -> Vec<String> {
        self.inner.all_special_tokens().into_iter().map(str::to_string).collect()
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.inner.vocab()
    }

    /// The id of `token`, else the unknown token's id (`convert_tokens_to_ids`).
    fn convert_token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.convert_token_to_id(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    fn num_special_tokens_to_add(&self, pair: bool) -> usize {
        self.inner.num_special_tokens_to_add(pair)
    }

    /// Encodes a list of texts (and of pairs) in parallel; returns {name: rows}.
    #[pyo3(signature = (texts, pairs=None, *, add_special_tokens=true, padding=None,
        truncation=None, max_length=None, pad_to_multiple_of=None, padding_side=None,
        return_tensors=None, return_token_type_ids=false, return_attention_mask=true))]
    #[allow(clippy::too_many_arguments)]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        pairs: Option<&Bound<'py, PyAny>>,
        add_special_tokens: bool,
        padding: Option<&Bound<'py, PyAny>>,
        truncation: Option<&Bound<'py, PyAny>>,
        max_length: Option<usize>,
        pad_to_multiple_of: Option<usize>,
        padding_side: Option<&str>,
        return_tensors: Option<&str>,
        return_token_type_ids: bool,
        return_attention_mask: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let request = request(
            add_special_tokens,
            padding,
            truncation,
            max_length,
            pad_to_multiple_of,
            padding_side,
        )?;
        let texts = Texts::from_sequence(texts, "text")?;
        let pairs = pairs.map(|pairs| Texts::from_sequence(pairs, "text_pair")).transpose()?;
        let batch = self.encode_texts(py, &texts, pairs.as_ref(), &request)?;
        outputs(py, &batch, return_tensors, return_token_type_ids, return_attention_mask)
    }

    /// `encode` through tokenizers' full pipeline, also for rows of words already split
    /// (`is_split_into_words`); returns ({name: rows}, the rows' `Details`), the first with
    /// `special_tokens_mask`, `offset_mapping` and `length` as asked.
    #[pyo3(signature = (texts, pairs=None, *, is_split_into_words=false,
        add_special_tokens=true, padding=None, truncation=None, max_length=None,
        pad_to_multiple_of=None, padding_side=None, return_tensors=None,
        return_token_type_ids=false, return_attention_mask=true,
        return_special_tokens_mask=false, return_offsets_mapping=false, return_length=false))]
    #[allow(clippy::too_many_arguments)]
    fn encode_details<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        pairs: Option<&Bound<'py, PyAny>>,
        is_split_into_words: bool,
        add_special_tokens: bool,
        padding: Option<&Bound<'py, PyAny>>,
        truncation: Option<&Bound<'py, PyAny>>,
        max_length: Option<usize>,
        pad_to_multiple_of: Option<usize>,
        padding_side: Option<&str>,
        return_tensors: Option<&str>,
        return_token_type_ids: bool,
        return_attention_mask: bool,
        return_special_tokens_mask: bool,
        return_offsets_mapping: bool,
        return_length: bool,
    ) -> PyResult<(Bound<'py, PyDict>, PyDetails)> {
        let request = request(
            add_special_tokens,
            padding,
            truncation,
            max_length,
            pad_to_multiple_of,
            padding_side,
        )?;
        let inputs = |items: &Bound<'py, PyAny>, what: &str| match is_split_into_words {
            true => Inputs::words(items, what),
            false => Ok(Inputs::Texts(Texts::from_sequence(items, what)?)),
        };
        let firsts = inputs(texts, "text")?;
        let seconds = pairs.map(|pairs| inputs(pairs, "text_pair")).transpose()?;
        let firsts = firsts.sequences()?;
        let seconds = seconds.as_ref().map(Inputs::sequences).transpose()?;
        let (rows, details) = py.detach(|| {
            guard(|| {
                let plan = self.inner.plan(&request)?;
                self.inner.encode_details(&firsts, seconds.as_deref(), &plan)
            })
        })?;
        let columns =
            outputs(py, &rows, return_tensors, return_token_type_ids, return_attention_mask)?;
        if return_special_tokens_mask {
            let flat: Vec<u32> = details.special_tokens_mask.concat();
            columns.set_item("special_tokens_mask", column(py, &rows, &flat, return_tensors)?)?;
        }
        if return_offsets_mapping {
            columns.set_item("offset_mapping", offsets(py, &rows, &details, return_tensors)?)?;
        }
        if return_length {
            let lengths: Vec<i64> = rows.lengths().into_iter().map(|n| n as i64).collect();
            let lengths = match return_tensors {
                Some("np") => PyArray1::from_vec(py, lengths).into_any(),
                Some(_) => PyTensor(tch::Tensor::from_slice(&lengths)).into_pyobject(py)?,
                None => PyList::new(py, lengths)?.into_any(),
            };
            columns.set_item("length", lengths)?;
        }
        Ok((columns, PyDetails { inner: details }))
    }

    /// Encodes a text column (Arrow array or chunked array, or a list of str; with
    /// `is_split_into_words` a column of word lists) in parallel into an Arrow table of list
    /// columns (an object with `__arrow_c_stream__`), with the word ids, special-tokens mask and
    /// offsets as asked.
    #[pyo3(signature = (column, pairs=None, *, is_split_into_words=false,
        add_special_tokens=true, padding=None, truncation=None, max_length=None,
        pad_to_multiple_of=None, padding_side=None, return_token_type_ids=false,
        return_attention_mask=true, return_special_tokens_mask=false,
        return_offsets_mapping=false, return_word_ids=false))]
    #[allow(clippy::too_many_arguments)]
    fn encode_column<'py>(
        &self,
        py: Python<'py>,
        column: &Bound<'py, PyAny>,
        pairs: Option<&Bound<'py, PyAny>>,
        is_split_into_words: bool,
        add_special_tokens: bool,
        padding: Option<&Bound<'py, PyAny>>,
        truncation: Option<&Bound<'py, PyAny>>,
        max_length: Option<usize>,
        pad_to_multiple_of: Option<usize>,
        padding_side: Option<&str>,
        return_token_type_ids: bool,
        return_attention_mask: bool,
        return_special_tokens_mask: bool,
        return_offsets_mapping: bool,
        return_word_ids: bool,
    ) -> PyResult<PyTable> {
        let request = request(
            add_special_tokens,
            padding,
            truncation,
            max_length,
            pad_to_multiple_of,
            padding_side,
        )?;
        let asked = arrow::DetailColumns {
            word_ids: return_word_ids,
            special_tokens_mask: return_special_tokens_mask,
            offset_mapping: return_offsets_mapping,
        };
        let record_batch = if is_split_into_words || asked != arrow::DetailColumns::default() {
            let firsts = Inputs::column(column, "text", is_split_into_words)?;
            let seconds = pairs
                .map(|pairs| Inputs::column(pairs, "text_pair", is_split_into_words))
                .transpose()?;
            let firsts = firsts.sequences()?;
            let seconds = seconds.as_ref().map(Inputs::sequences).transpose()?;
            py.detach(|| {
                guard(|| {
                    let plan = self.inner.plan(&request)?;
                    let (rows, details) =
                        self.inner.encode_details(&firsts, seconds.as_deref(), &plan)?;
                    arrow::record_batch(
                        rows,
                        return_token_type_ids,
                        return_attention_mask,
                        Some((&details, asked)),
                    )
                })
            })?
        } else {
            let texts = Texts::from_column(column, "text")?;
            let pairs = pairs.map(|pairs| Texts::from_column(pairs, "text_pair")).transpose()?;
            let batch = self.encode_texts(py, &texts, pairs.as_ref(), &request)?;
            py.detach(|| {
                guard(|| {
                    arrow::record_batch(batch, return_token_type_ids, return_attention_mask, None)
                })
            })?
        };
        let schema = record_batch.schema();
        PyTable::try_new(vec![record_batch], schema)
    }

    /// The tokens of one text (and pair), special tokens included when asked for.
    #[pyo3(signature = (text, pair=None, add_special_tokens=false))]
    fn tokenize(
        &self,
        py: Python<'_>,
        text: &str,
        pair: Option<&str>,
        add_special_tokens: bool,
    ) -> PyResult<Vec<String>> {
        let request = Request { add_special_tokens, ..Request::default() };
        py.detach(|| {
            guard(|| {
                let plan = self.inner.plan(&request)?;
                self.inner.tokenize(text, pair, &plan)
            })
        })
    }

    #[pyo3(signature = (ids, skip_special_tokens=false, clean_up_tokenization_spaces=None))]
    fn decode(
        &self,
        py: Python<'_>,
        ids: Vec<u32>,
        skip_special_tokens: bool,
        clean_up_tokenization_spaces: Option<bool>,
    ) -> PyResult<String> {
        py.detach(|| {
            guard(|| self.inner.decode(&ids, skip_special_tokens, clean_up_tokenization_spaces))
        })
    }

    #[pyo3(signature = (sequences, skip_special_tokens=false, clean_up_tokenization_spaces=None))]
    fn decode_batch(
        &self,
        py: Python<'_>,
        sequences: Vec<Vec<u32>>,
        skip_special_tokens: bool,
        clean_up_tokenization_spaces: Option<bool>,
    ) -> PyResult<Vec<String>> {
        py.detach(|| {
            guard(|| {
                self.inner.decode_batch(
                    &sequences,
                    skip_special_tokens,
                    clean_up_tokenization_spaces,
                )
            })
        })
    }

    /// Writes tokenizer.json and tokenizer_config.json into `directory`; returns their paths.
    fn save(&self, py: Python<'_>, directory: PathBuf) -> PyResult<Vec<PathBuf>> {
        py.detach(|| guard(|| self.inner.save(&directory)))
    }
}

impl PyTokenizer {
    /// The shared body of `encode` and `encode_column`: the core encodes without the GIL.
    pub(super) fn encode_texts(
        &self,
        py: Python<'_>,
        texts: &Texts<'_>,
        pairs: Option<&Texts<'_>>,
        request: &Request,
    ) -> PyResult<Rows> {
        let texts = texts.strs()?;
        let pairs = pairs.map(Texts::strs).transpose()?;
        py.detach(|| {
            guard(|| {
                let plan = self.inner.plan(request)?;
                self.inner.encode_batch(&texts, pairs.as_deref(), &plan)
            })
        })
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenizer>()?;
    m.add_class::<PyDetails>()?;
    m.add("SPECIAL_TOKEN_NAMES", crate::tokenizer::SPECIAL_TOKEN_NAMES.to_vec())
}
