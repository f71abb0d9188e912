//! Bindings of `train::metrics` for `ferrotune.evaluate` and `compute_metrics` helpers.

use crate::train::metrics::{self, Average, Confusion};
use crate::train::seqeval::{Scheme, Scores};
use numpy::{PyArray2, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

fn slices<'a>(
    predictions: &'a PyReadonlyArray1<'_, i64>,
    references: &'a PyReadonlyArray1<'_, i64>,
) -> PyResult<(&'a [i64], &'a [i64])> {
    Ok((predictions.as_slice()?, references.as_slice()?))
}

#[pyfunction]
fn accuracy(
    predictions: PyReadonlyArray1<'_, i64>,
    references: PyReadonlyArray1<'_, i64>,
) -> PyResult<f64> {
    let (p, r) = slices(&predictions, &references)?;
    Ok(metrics::accuracy(p, r)?)
}

/// (precision, recall, f1) with sklearn's `average` ("binary", "micro", "macro", "weighted").
#[pyfunction]
#[pyo3(signature = (predictions, references, average="binary", pos_label=1))]
fn precision_recall_f1(
    predictions: PyReadonlyArray1<'_, i64>,
    references: PyReadonlyArray1<'_, i64>,
    average: Option<&str>,
    pos_label: i64,
) -> PyResult<(f64, f64, f64)> {
    let (p, r) = slices(&predictions, &references)?;
    Ok(metrics::precision_recall_f1(p, r, Average::parse(average, pos_label)?)?)
}

#[pyfunction]
fn matthews_correlation(
    predictions: PyReadonlyArray1<'_, i64>,
    references: PyReadonlyArray1<'_, i64>,
) -> PyResult<f64> {
    let (p, r) = slices(&predictions, &references)?;
    Ok(metrics::matthews_correlation(p, r)?)
}

/// (labels, counts) with counts[i][j] = examples of label i predicted as label j.
#[pyfunction]
fn confusion_matrix<'py>(
    py: Python<'py>,
    predictions: PyReadonlyArray1<'py, i64>,
    references: PyReadonlyArray1<'py, i64>,
) -> PyResult<(Vec<i64>, Bound<'py, PyArray2<u64>>)> {
    let (p, r) = slices(&predictions, &references)?;
    let Confusion { labels, counts } = Confusion::new(p, r)?;
    Ok((labels, PyArray2::from_vec2(py, &counts)?))
}

/// A Python sequence of sentences of str tags; anything else names the sentence.
fn sentences(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<Vec<String>>> {
    let mut sentences = Vec::new();
    for (i, sentence) in value.try_iter()?.enumerate() {
        let sentence = sentence?;
        if sentence.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(format!(
                "{what}[{i}] is a str; seqeval takes a list of tags per sentence"
            )));
        }
        sentences.push(sentence.extract::<Vec<String>>().map_err(|_| {
            PyTypeError::new_err(format!("{what}[{i}] must be a list of str tags"))
        })?);
    }
    Ok(sentences)
}

/// seqeval's report: ([(type, precision, recall, f1, number)], (overall ...), accuracy).
#[pyfunction]
#[pyo3(signature = (predictions, references, suffix=false, strict=false, scheme=None,
    zero_division=0.0))]
#[allow(clippy::type_complexity)]
fn seqeval(
    predictions: &Bound<'_, PyAny>,
    references: &Bound<'_, PyAny>,
    suffix: bool,
    strict: bool,
    scheme: Option<&str>,
    zero_division: f64,
) -> PyResult<(Vec<(String, f64, f64, f64, usize)>, (f64, f64, f64, usize), f64)> {
    let scheme = scheme.map(Scheme::parse).transpose()?;
    let p = sentences(predictions, "predictions")?;
    let r = sentences(references, "references")?;
    let report = crate::train::seqeval::seqeval(&p, &r, suffix, strict, scheme, zero_division)?;
    let row = |s: &Scores| (s.precision, s.recall, s.f1, s.number);
    let types = report
        .types
        .iter()
        .map(|(kind, s)| (kind.clone(), s.precision, s.recall, s.f1, s.number))
        .collect();
    Ok((types, row(&report.overall), report.accuracy))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(seqeval, m)?)?;
    m.add_function(wrap_pyfunction!(accuracy, m)?)?;
    m.add_function(wrap_pyfunction!(precision_recall_f1, m)?)?;
    m.add_function(wrap_pyfunction!(matthews_correlation, m)?)?;
    m.add_function(wrap_pyfunction!(confusion_matrix, m)?)?;
    Ok(())
}
