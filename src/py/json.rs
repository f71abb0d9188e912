//! `serde_json::Value` ↔ Python objects (dict keeps the file's key order).

use crate::error::Error;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value;

pub fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            // serde_json numbers are i64, u64 or f64
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// A Python value made of None, bool, int, float, str, list, tuple and dict (str keys) as JSON;
/// anything else, or a float that is not finite, is a ValueError naming the key.
pub fn from_python(value: &Bound<'_, PyAny>) -> PyResult<Value> {
    convert(value, "")
}

fn convert(value: &Bound<'_, PyAny>, key: &str) -> PyResult<Value> {
    let bad = |what: String| Error::value(format!("{key}: {what} cannot be passed to Rust"));
    if value.is_none() {
        Ok(Value::Null)
    } else if let Ok(b) = value.cast::<PyBool>() {
        Ok(Value::Bool(b.is_true()))
    } else if value.is_instance_of::<PyInt>() {
        match value.extract::<i64>() {
            Ok(i) => Ok(Value::from(i)),
            Err(_) => Ok(Value::from(value.extract::<u64>().map_err(|_| bad(value.to_string()))?)),
        }
    } else if let Ok(f) = value.cast::<PyFloat>() {
        let f = f.value();
        serde_json::Number::from_f64(f).map(Value::Number).ok_or_else(|| bad(f.to_string()).into())
    } else if let Ok(s) = value.cast::<PyString>() {
        Ok(Value::String(s.to_str()?.to_owned()))
    } else if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let items: PyResult<Vec<Value>> = value
            .try_iter()?
            .enumerate()
            .map(|(i, item)| convert(&item?, &format!("{key}[{i}]")))
            .collect();
        Ok(Value::Array(items?))
    } else if let Ok(dict) = value.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (k, v) in dict.iter() {
            let k: String = k.extract()?;
            let path = if key.is_empty() { k.clone() } else { format!("{key}.{k}") };
            map.insert(k, convert(&v, &path)?);
        }
        Ok(Value::Object(map))
    } else {
        Err(bad(format!("a {}", value.get_type().name()?)).into())
    }
}
