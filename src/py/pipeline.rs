//! `_core.classify`: the inference of `pipeline("text-classification")` in one native call:
//! parallel tokenization, batches of examples of similar length, no autograd, logits back in
//! input order, all without the GIL.

use super::errors::{guard, Signals};
use super::model::PySequenceClassifier;
use super::tensor::PyTensor;
use super::tokenizer::{request, PyTokenizer, Texts};
use crate::error::Error;
use crate::ops::Half;
use crate::train::data::{Collator, Examples};
use crate::train::run::{self, Batching};
use pyo3::prelude::*;

/// Logits [texts, num_labels] (float32, CPU) of `texts` (and `pairs`).
#[pyfunction]
#[pyo3(signature = (model, tokenizer, texts, pairs=None, truncation=None, max_length=None, batch_size=None, bf16=false))]
#[allow(clippy::too_many_arguments)]
fn classify(
    py: Python<'_>,
    model: Py<PySequenceClassifier>,
    tokenizer: PyRef<'_, PyTokenizer>,
    texts: &Bound<'_, PyAny>,
    pairs: Option<&Bound<'_, PyAny>>,
    truncation: Option<&Bound<'_, PyAny>>,
    max_length: Option<usize>,
    batch_size: Option<usize>,
    bf16: bool,
) -> PyResult<PyTensor> {
    if batch_size == Some(0) {
        return Err(Error::value("batch_size must be a positive integer, got 0").into());
    }
    let texts = Texts::from_column(texts, "text")?;
    let pairs = pairs.map(|p| Texts::from_column(p, "text_pair")).transpose()?;
    let request = request(true, None, truncation, max_length, None, None)?;
    let encoded = tokenizer.encode_texts(py, &texts, pairs.as_ref(), &request)?;
    let core = &tokenizer.inner;
    let pad_token_id = core.pad_token_id().map(i64::from);
    let token_types = core.model_input_names().iter().any(|n| n == "token_type_ids");
    let signals = Signals::default();
    let logits = signals.raised(py.detach(|| {
        guard(|| {
            let model = model.get().model();
            let (limit, device, has_types, config_pad) = {
                let m = model.lock().unwrap_or_else(|p| p.into_inner());
                (
                    m.max_sequence_length(),
                    m.device(),
                    m.config.type_vocab_size > 0,
                    m.config.pad_token_id,
                )
            };
            if let Some(row) = (0..encoded.len()).find(|&i| encoded.row(i).len() as i64 > limit) {
                return Err(Error::value(format!(
                    "input {row} has {} tokens, more than the model's maximum of {limit}; pass \
                     truncation=True to truncate long inputs",
                    encoded.row(row).len()
                )));
            }
            let examples = Examples::from_encoded(&encoded, token_types && has_types);
            let collator = Collator {
                pad_token_id: pad_token_id.or(config_pad).unwrap_or(0),
                pad_to_multiple_of: None,
                pad_left: false,
            };
            let batching = batch_size
                .map_or_else(|| Batching::automatic(device.is_cuda()), Batching::Examples);
            run::predict(
                model,
                &examples,
                &collator,
                batching,
                bf16.then_some(Half::BFloat16),
                None,
                false,
                &|| signals.check(),
            )
            .map(|p| p.logits)
        })
    }))?;
    Ok(PyTensor(logits))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(classify, m)?)
}
