//! The pipelines' native calls: `_core.classify` (text classification: logits),
//! `_core.token_classification` (entities) and `_core.fill_mask` (candidates), each one call:
//! parallel tokenization, batches of examples of similar length, no autograd, results back in
//! input order, all without the GIL.

use super::errors::{guard, Signals};
use super::model::PyModel;
use super::tensor::PyTensor;
use super::tokenizer::{request, PyTokenizer, Texts};
use crate::inference;
use crate::pipelines::{self, ner};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// Logits [texts, num_labels] (float32, CPU) of `texts` (and `pairs`).
#[pyfunction]
#[pyo3(signature = (model, tokenizer, texts, pairs=None, truncation=None, max_length=None, batch_size=None, bf16=false))]
#[allow(clippy::too_many_arguments)]
fn classify(
    py: Python<'_>,
    model: Py<PyModel>,
    tokenizer: PyRef<'_, PyTokenizer>,
    texts: &Bound<'_, PyAny>,
    pairs: Option<&Bound<'_, PyAny>>,
    truncation: Option<&Bound<'_, PyAny>>,
    max_length: Option<usize>,
    batch_size: Option<usize>,
    bf16: bool,
) -> PyResult<PyTensor> {
    let texts = Texts::from_column(texts, "text")?;
    let pairs = pairs.map(|p| Texts::from_column(p, "text_pair")).transpose()?;
    let request = request(true, None, truncation, max_length, None, None)?;
    // Checked before the texts are tokenized.
    inference::Batching::for_pipeline(batch_size, false)?;
    let encoded = tokenizer.encode_texts(py, &texts, pairs.as_ref(), &request)?;
    let core = &tokenizer.inner;
    let inputs = inference::TokenizerInputs {
        pad_token_id: core.pad_token_id().map(i64::from),
        token_type_ids: core.model_input_names().iter().any(|n| n == "token_type_ids"),
    };
    let signals = Signals::default();
    let logits = signals.raised(py.detach(|| {
        guard(|| {
            let model = model.get().model();
            inference::classify(model, encoded, inputs, batch_size, bf16, &|| signals.check())
        })
    }))?;
    Ok(PyTensor(logits))
}

/// The entities of each text (a list per text) as transformers' dicts ("entity" and "index"
/// with `aggregation_strategy="none"`, "entity_group" otherwise; scores as floats), and
/// whether the tokenizer's words came from the fallback heuristic (the caller warns).
#[pyfunction]
#[pyo3(signature = (model, tokenizer, texts, labels, aggregation_strategy="none", ignore_labels=vec!["O".to_string()], batch_size=None, bf16=false))]
#[allow(clippy::too_many_arguments)]
fn token_classification<'py>(
    py: Python<'py>,
    model: Py<PyModel>,
    tokenizer: PyRef<'_, PyTokenizer>,
    texts: &Bound<'py, PyAny>,
    labels: Vec<String>,
    aggregation_strategy: &str,
    ignore_labels: Vec<String>,
    batch_size: Option<usize>,
    bf16: bool,
) -> PyResult<(Bound<'py, PyList>, bool)> {
    let aggregation = ner::Aggregation::parse(aggregation_strategy)?;
    inference::Batching::for_pipeline(batch_size, false)?;
    let texts = Texts::from_column(texts, "text")?;
    let strs = texts.strs()?;
    let settings = ner::Settings { labels, aggregation, ignore_labels };
    let run = pipelines::Run { batch_size, bf16 };
    let signals = Signals::default();
    let core = &tokenizer.inner;
    let (entities, heuristic) = signals.raised(py.detach(|| {
        guard(|| {
            let model = model.get().model();
            pipelines::token_classification(model, core, &strs, &settings, run, &|| signals.check())
        })
    }))?;
    Ok((entity_dicts(py, entities)?, heuristic))
}

/// The entities as transformers' dicts: "entity" and "index" for tokens, "entity_group" for
/// groups; scores as floats.
fn entity_dicts<'py>(
    py: Python<'py>,
    entities: Vec<Vec<ner::Entity>>,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for found in entities {
        let row = PyList::empty(py);
        for e in found {
            let d = PyDict::new(py);
            match e.index {
                Some(index) => {
                    d.set_item("entity", e.label)?;
                    d.set_item("score", e.score)?;
                    d.set_item("index", index)?;
                }
                None => {
                    d.set_item("entity_group", e.label)?;
                    d.set_item("score", e.score)?;
                }
            }
            d.set_item("word", e.word)?;
            d.set_item("start", e.start)?;
            d.set_item("end", e.end)?;
            row.append(d)?;
        }
        out.append(row)?;
    }
    Ok(out)
}

/// `token_classification`'s results from logits computed elsewhere: one tensor [tokens, labels]
/// per text, for the texts tokenized as the pipeline tokenizes them.
#[pyfunction]
#[pyo3(signature = (tokenizer, texts, logits, labels, aggregation_strategy="none", ignore_labels=vec!["O".to_string()]))]
fn token_entities<'py>(
    py: Python<'py>,
    tokenizer: PyRef<'_, PyTokenizer>,
    texts: &Bound<'py, PyAny>,
    logits: Vec<PyTensor>,
    labels: Vec<String>,
    aggregation_strategy: &str,
    ignore_labels: Vec<String>,
) -> PyResult<(Bound<'py, PyList>, bool)> {
    let aggregation = ner::Aggregation::parse(aggregation_strategy)?;
    let texts = Texts::from_column(texts, "text")?;
    let strs = texts.strs()?;
    let settings = ner::Settings { labels, aggregation, ignore_labels };
    let logits = logits
        .iter()
        .map(|t| pipelines::float_values(&t.0))
        .collect::<crate::Result<Vec<Vec<f32>>>>()?;
    let core = &tokenizer.inner;
    let (entities, heuristic) =
        py.detach(|| guard(|| pipelines::entities_from_logits(core, &strs, &logits, &settings)))?;
    Ok((entity_dicts(py, entities)?, heuristic))
}

/// The ids of `targets` (`FillMaskPipeline.get_target_ids`), sorted, and the warnings to log.
#[pyfunction]
fn fill_mask_targets(
    py: Python<'_>,
    tokenizer: PyRef<'_, PyTokenizer>,
    targets: Vec<String>,
) -> PyResult<(Vec<i64>, Vec<String>)> {
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let core = &tokenizer.inner;
    py.detach(|| guard(|| pipelines::fill_mask::target_ids(core, &targets)))
}

/// The candidates of each mask of each text: per text a list (one per mask) of lists of
/// {"score", "token", "token_str", "sequence"} dicts.
#[pyfunction]
#[pyo3(signature = (model, tokenizer, texts, top_k=5, targets=None, truncation=None, max_length=None, batch_size=None, bf16=false))]
#[allow(clippy::too_many_arguments)]
fn fill_mask<'py>(
    py: Python<'py>,
    model: Py<PyModel>,
    tokenizer: PyRef<'_, PyTokenizer>,
    texts: &Bound<'py, PyAny>,
    top_k: usize,
    targets: Option<Vec<i64>>,
    truncation: Option<&Bound<'py, PyAny>>,
    max_length: Option<usize>,
    batch_size: Option<usize>,
    bf16: bool,
) -> PyResult<Bound<'py, PyList>> {
    inference::Batching::for_pipeline(batch_size, false)?;
    let texts = Texts::from_column(texts, "text")?;
    let strs = texts.strs()?;
    let ask = pipelines::FillMask {
        top_k,
        targets: targets.as_deref(),
        request: request(true, None, truncation, max_length, None, None)?,
    };
    let run = pipelines::Run { batch_size, bf16 };
    let signals = Signals::default();
    let core = &tokenizer.inner;
    let results = signals.raised(py.detach(|| {
        guard(|| {
            let model = model.get().model();
            pipelines::fill_mask(model, core, &strs, &ask, run, &|| signals.check())
        })
    }))?;
    let out = PyList::empty(py);
    for text in results {
        let masks = PyList::empty(py);
        for candidates in text {
            let row = PyList::empty(py);
            for c in candidates {
                let d = PyDict::new(py);
                d.set_item("score", c.score)?;
                d.set_item("token", c.token)?;
                d.set_item("token_str", c.token_str)?;
                d.set_item("sequence", c.sequence)?;
                row.append(d)?;
            }
            masks.append(row)?;
        }
        out.append(masks)?;
    }
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(classify, m)?)?;
    m.add_function(wrap_pyfunction!(token_classification, m)?)?;
    m.add_function(wrap_pyfunction!(token_entities, m)?)?;
    m.add_function(wrap_pyfunction!(fill_mask_targets, m)?)?;
    m.add_function(wrap_pyfunction!(fill_mask, m)?)
}
