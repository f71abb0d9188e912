//! `_core.classify`: the inference of `pipeline("text-classification")` in one native call:
//! parallel tokenization, batches of examples of similar length, no autograd, logits back in
//! input order, all without the GIL.

use super::errors::{guard, Signals};
use super::model::PyModel;
use super::tensor::PyTensor;
use super::tokenizer::{request, PyTokenizer, Texts};
use crate::inference;
use pyo3::prelude::*;

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

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(classify, m)?)
}
