//! Checkpoint files and state dicts: safetensors in and out, and the matching of a checkpoint's
//! keys to the model's variables with transformers' rules (`modeling_utils.py`,
//! `_load_pretrained_model`): old LayerNorm names (`gamma`/`beta`) are renamed, a checkpoint of the
//! bare encoder gets the model's `base_model_prefix`, buffers (`position_ids`) are ignored, and
//! what is left over is reported as missing, unexpected or mismatched.

use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// What loading a state dict did, as transformers' `LoadStateDictInfo` reports it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LoadReport {
    /// Model variables the checkpoint lacks: they keep their fresh initialization.
    pub missing: Vec<String>,
    /// Checkpoint tensors the model has no variable for: ignored.
    pub unexpected: Vec<String>,
    /// (key, checkpoint shape, model shape): re-initialized (only with ignore_mismatched_sizes).
    pub mismatched: Vec<(String, Vec<i64>, Vec<i64>)>,
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        other => {
            return Err(Error::not_implemented(format!("cannot save tensors of dtype {other:?}")))
        }
    })
}

/// How checkpoint keys map to a model's variables besides by name.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyRules<'a> {
    /// The model's `base_model_prefix`, which a bare encoder's checkpoint lacks.
    pub prefix: &'a str,
    /// (key, variable) of tied weights: the key loads into that variable.
    pub tied: &'a [(String, String)],
    /// Substrings of checkpoint keys the model ignores when it has no variable for them
    /// (`_keys_to_ignore_on_load_unexpected`).
    pub ignored: &'a [&'a str],
}

/// Loads safetensors files (one, or the shards of an index) into `variables` (see
/// `load_into`). Each checkpoint tensor is a view of its mapped file, copied once into its
/// variable: no copy of the whole checkpoint is made first (90 MB less at the peak for MiniLM).
pub fn load_safetensors(
    variables: &HashMap<String, Tensor>,
    rules: KeyRules,
    paths: &[PathBuf],
    ignore_mismatched_sizes: bool,
) -> Result<LoadReport> {
    let maps = paths.iter().map(|p| map(p)).collect::<Result<Vec<_>>>()?;
    let mut views = Vec::new();
    for (path, mmap) in paths.iter().zip(&maps) {
        views.extend(views_of(path, mmap)?);
    }
    // The views point into `maps`: load_into only reads them, and drops them all (its report
    // holds names and shapes, no tensor) before the maps are unmapped at the end of this scope.
    copy_into(variables, rules, views, ignore_mismatched_sizes, |view| release(&maps, view))
}

/// Drops the pages of a copied view from this process's resident memory. A mapped file's pages
/// count there once read, until unmapped: loading held the whole checkpoint besides the model
/// at its peak (1.05 GB over the baseline for the 537 MB ModernBERT-base shape, 0.53 GB after).
/// The pages stay in the page cache; reading the view again would fault them back in.
fn release(maps: &[memmap2::Mmap], view: &Tensor) {
    let start = view.data_ptr() as usize;
    let end = start + view.numel() * view.kind().elt_size_in_bytes();
    let mapped = maps.iter().any(|m| {
        let base = m.as_ptr() as usize;
        start >= base && end <= base + m.len()
    });
    if !mapped {
        return; // a copy (unaligned data), not a view
    }
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    // Whole pages inside the view only: its neighbours may not be copied yet.
    let (from, to) = (start.next_multiple_of(page), end / page * page);
    if to > from {
        // SAFETY: [from, to) lies inside one of `maps`, read-only shared file mappings, for which
        // MADV_DONTNEED only unmaps pages that can be read again from the file; a failure
        // leaves the pages resident, which is harmless.
        unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED) };
    }
}

fn map(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; load_safetensors drops it before returning, and no tensor
    // viewing it outlives it.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

/// The tensors of the safetensors file `bytes`, sorted by name: views of `bytes` that must not
/// outlive it (copies where the data is not aligned for its dtype).
fn views_of(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let invalid = |detail: String| {
        Error::value(format!("{}: not a valid safetensors file: {detail}", path.display()))
    };
    let file = SafeTensors::deserialize(bytes).map_err(|e| invalid(e.to_string()))?;
    let mut tensors = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let kind = kind_of(view.dtype()).ok_or_else(|| {
                invalid(format!("tensor {name:?} has unsupported dtype {:?}", view.dtype()))
            })?;
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let data = view.data();
            let aligned = (data.as_ptr() as usize) % kind.elt_size_in_bytes() == 0;
            let tensor = if aligned && !data.is_empty() {
                // SAFETY: `data` holds exactly the shape's elements of `kind` (checked by
                // deserialize), is aligned for it, and outlives the view (the caller's promise).
                unsafe { Tensor::f_from_blob(data.as_ptr(), &shape, &[], kind, Device::Cpu)? }
            } else {
                Tensor::f_from_data_size(data, &shape, kind)?
            };
            Ok((name, tensor))
        })
        .collect::<Result<Vec<_>>>()?;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tensors)
}

/// A tensor's bytes in the layout safetensors stores (contiguous, little-endian, on the CPU).
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl Bytes {
    fn of(tensor: &Tensor) -> Result<Bytes> {
        let tensor = tensor.to_device(Device::Cpu).contiguous();
        let numel = tensor.numel();
        let mut data = vec![0u8; numel * tensor.kind().elt_size_in_bytes()];
        tensor.f_copy_data_u8(&mut data, numel)?;
        Ok(Bytes {
            dtype: dtype_of(tensor.kind())?,
            shape: tensor.size().iter().map(|&d| d as usize).collect(),
            data,
        })
    }
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes `tensors` to `path` with the metadata transformers expects (`format: pt`). The file
/// is written beside its destination and renamed into place, so a crash leaves either the old
/// file or the new one, never half of one.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let bytes: BTreeMap<&str, Bytes> = tensors
        .iter()
        .map(|(name, t)| Ok((name.as_str(), Bytes::of(t)?)))
        .collect::<Result<_>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let partial = path.with_extension("safetensors.partial");
    safetensors::serialize_to_file(bytes.iter().map(|(k, v)| (*k, v)), Some(metadata), &partial)
        .map_err(|e| match e {
            safetensors::SafeTensorError::IoError(io) => Error::io(&partial, io),
            other => Error::Other(format!("{}: {other}", partial.display())),
        })?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
}

/// transformers' `_fix_state_dict_key_on_load`: old LayerNorm parameter names.
fn modern_name(key: &str) -> String {
    if let Some(stem) = key.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = key.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        key.to_string()
    }
}

/// Non-persistent buffers that older checkpoints carry; transformers ignores them on load.
fn is_buffer(key: &str) -> bool {
    key.ends_with("embeddings.position_ids") || key.ends_with("embeddings.token_type_ids")
}

/// Copies the checkpoint's tensors into the model's `variables` (name → variable), following
/// transformers' key rules. A shape mismatch is an error unless `ignore_mismatched_sizes`.
pub fn load_into(
    variables: &HashMap<String, Tensor>,
    rules: KeyRules,
    checkpoint: Vec<(String, Tensor)>,
    ignore_mismatched_sizes: bool,
) -> Result<LoadReport> {
    copy_into(variables, rules, checkpoint, ignore_mismatched_sizes, |_| {})
}

/// `load_into`, calling `copied` with each checkpoint tensor once it is copied.
fn copy_into(
    variables: &HashMap<String, Tensor>,
    rules: KeyRules,
    checkpoint: Vec<(String, Tensor)>,
    ignore_mismatched_sizes: bool,
    copied: impl Fn(&Tensor),
) -> Result<LoadReport> {
    let with_prefix = format!("{}.", rules.prefix);
    // A checkpoint of the bare encoder (BertModel) has no prefix: its encoder keys get the
    // model's, while head keys (`classifier.*`) match as they are.
    let bare_encoder = !checkpoint.iter().any(|(k, _)| modern_name(k).starts_with(&with_prefix));
    let mut report = LoadReport::default();
    let mut matched = std::collections::HashSet::new();
    let mut plan = Vec::new();
    for (key, tensor) in checkpoint {
        let mut name = modern_name(&key);
        if let Some((_, variable)) = rules.tied.iter().find(|(tied, _)| *tied == name) {
            name = variable.clone();
        }
        if bare_encoder && !variables.contains_key(&name) {
            name = format!("{with_prefix}{name}");
        }
        if is_buffer(&name) {
            continue;
        }
        let Some(variable) = variables.get(&name) else {
            if !rules.ignored.iter().any(|pattern| name.contains(pattern)) {
                report.unexpected.push(key);
            }
            continue;
        };
        matched.insert(name.clone());
        if tensor.size() != variable.size() {
            if !ignore_mismatched_sizes {
                return Err(Error::value(format!(
                    "the checkpoint's {name:?} has shape {:?} but the model expects {:?}; pass \
                     ignore_mismatched_sizes=True to re-initialize it instead",
                    tensor.size(),
                    variable.size()
                )));
            }
            report.mismatched.push((name, tensor.size(), variable.size()));
            continue;
        }
        plan.push((variable, tensor));
    }
    tch::no_grad(|| -> Result<()> {
        for (variable, tensor) in plan {
            variable.shallow_clone().f_copy_(&tensor)?;
            copied(&tensor);
        }
        Ok(())
    })?;
    report.missing = variables.keys().filter(|k| !matched.contains(*k)).cloned().collect();
    // A tied weight whose variable is missing is missing too, as transformers reports it.
    let tied_missing: Vec<String> = rules
        .tied
        .iter()
        .filter(|(_, variable)| report.missing.contains(variable))
        .map(|(tied, _)| tied.clone())
        .collect();
    report.missing.extend(tied_missing);
    report.missing.sort();
    report.unexpected.sort();
    report.mismatched.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(shape: &[i64]) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, Device::Cpu)).set_requires_grad(true)
    }

    #[test]
    fn bare_encoder_keys_get_the_prefix_and_old_names_are_renamed() {
        let variables = HashMap::from([
            ("bert.embeddings.LayerNorm.weight".to_string(), var(&[4])),
            ("bert.embeddings.LayerNorm.bias".to_string(), var(&[4])),
            ("classifier.weight".to_string(), var(&[2, 4])),
        ]);
        let checkpoint = vec![
            (
                "embeddings.LayerNorm.gamma".to_string(),
                Tensor::ones([4], (Kind::Float, Device::Cpu)),
            ),
            (
                "embeddings.LayerNorm.beta".to_string(),
                Tensor::full([4], 2.0, (Kind::Float, Device::Cpu)),
            ),
            ("embeddings.position_ids".to_string(), Tensor::arange(4, (Kind::Int64, Device::Cpu))),
            ("cls.predictions.bias".to_string(), Tensor::zeros([10], (Kind::Float, Device::Cpu))),
        ];
        let report = load_into(
            &variables,
            KeyRules { prefix: "bert", ..Default::default() },
            checkpoint,
            false,
        )
        .unwrap();
        assert_eq!(report.missing, vec!["classifier.weight"]);
        assert_eq!(report.unexpected, vec!["cls.predictions.bias"]);
        assert!(report.mismatched.is_empty());
        assert_eq!(variables["bert.embeddings.LayerNorm.bias"].double_value(&[0]), 2.0);
        assert_eq!(variables["bert.embeddings.LayerNorm.weight"].double_value(&[3]), 1.0);
    }

    #[test]
    fn a_shape_mismatch_names_the_key_and_both_shapes() {
        let variables = HashMap::from([("classifier.weight".to_string(), var(&[2, 4]))]);
        let checkpoint = || {
            vec![(
                "classifier.weight".to_string(),
                Tensor::ones([3, 4], (Kind::Float, Device::Cpu)),
            )]
        };
        let err = load_into(
            &variables,
            KeyRules { prefix: "bert", ..Default::default() },
            checkpoint(),
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the checkpoint's \"classifier.weight\" has shape [3, 4] but the model expects [2, 4]; \
             pass ignore_mismatched_sizes=True to re-initialize it instead"
        );
        let report = load_into(
            &variables,
            KeyRules { prefix: "bert", ..Default::default() },
            checkpoint(),
            true,
        )
        .unwrap();
        assert_eq!(
            report.mismatched,
            vec![("classifier.weight".to_string(), vec![3, 4], vec![2, 4])]
        );
        assert_eq!(variables["classifier.weight"].abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    /// This process's resident pages of mapped files, in kB.
    fn resident_file_kb() -> i64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn a_copied_view_leaves_resident_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let big = Tensor::ones([4096, 1024], (Kind::Float, Device::Cpu)); // 16 MB
        write_safetensors(&path, &[("big".into(), big.shallow_clone())]).unwrap();
        let maps = vec![map(&path).unwrap()];
        let views = views_of(&path, &maps[0]).unwrap();
        let before = resident_file_kb();
        assert_eq!(views[0].1.sum(Kind::Float).double_value(&[]), 4096.0 * 1024.0);
        let read = resident_file_kb();
        assert!(read - before > 12_000, "reading the view maps its pages: {before} → {read} kB");
        release(&maps, &views[0].1);
        let released = resident_file_kb();
        assert!(read - released > 12_000, "released: {read} → {released} kB");
        // The view still reads the file.
        assert!(views[0].1.equal(&big));
        // Another tensor's memory is not a view of the maps and is left alone.
        release(&maps, &big);
    }

    #[test]
    fn safetensors_round_trip_and_corrupt_files() {
        let dir = std::env::temp_dir().join(format!("ferrotune-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors");
        let a = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]);
        let b = Tensor::from_slice(&[1i64, -2]).to_kind(Kind::BFloat16);
        write_safetensors(&path, &[("a".into(), a.t_copy()), ("b".into(), b.shallow_clone())])
            .unwrap();
        // Loading views the mapped file and copies each tensor once into its variable.
        let variables: HashMap<String, Tensor> = [
            ("m.a".to_string(), Tensor::zeros([3, 2], (Kind::Float, Device::Cpu))),
            ("m.b".to_string(), Tensor::zeros([2], (Kind::BFloat16, Device::Cpu))),
        ]
        .into();
        let report = load_safetensors(
            &variables,
            KeyRules { prefix: "m", ..Default::default() },
            std::slice::from_ref(&path),
            false,
        )
        .unwrap();
        assert!(variables["m.a"].equal(&a.t_copy()));
        assert!(variables["m.b"].equal(&b));
        assert!(report.unexpected.is_empty() && report.missing.is_empty());

        // Names sorted, dtypes as stored.
        let bytes = std::fs::read(&path).unwrap();
        let back = views_of(&path, &bytes).unwrap();
        assert_eq!(back[0].0, "a");
        assert!(back[0].1.equal(&a.t_copy()));
        assert_eq!(back[1].1.kind(), Kind::BFloat16);
        assert!(back[1].1.equal(&b));
        drop(back);

        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let err = load_safetensors(
            &variables,
            KeyRules { prefix: "m", ..Default::default() },
            std::slice::from_ref(&path),
            false,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Value(_)));
        assert!(
            err.to_string()
                .starts_with(&format!("{}: not a valid safetensors file", path.display())),
            "{err}"
        );
    }
}
