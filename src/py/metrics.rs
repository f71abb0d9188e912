//! Bindings of `train::metrics` for `ferrotune.evaluate` and `compute_metrics` helpers.

use crate::train::metrics::{self, Average, Confusion};
use numpy::{PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;

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

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(accuracy, m)?)?;
    m.add_function(wrap_pyfunction!(precision_recall_f1, m)?)?;
    m.add_function(wrap_pyfunction!(matthews_correlation, m)?)?;
    m.add_function(wrap_pyfunction!(confusion_matrix, m)?)?;
    Ok(())
}
