//! `pipeline("fill-mask")`: the most likely tokens for each mask token of a text, as
//! transformers' `FillMaskPipeline` finds them (`get_target_ids`, `postprocess`): torch's
//! softmax over the vocabulary (or over the targets), `topk`, and the text with each candidate
//! in place of its mask.

use crate::error::{Error, Result};
use crate::tokenizer::{Request, Tokenizer, Truncation};
use tch::{Kind, Tensor};

/// One candidate for a mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub score: f64,
    pub token: i64,
    pub token_str: String,
    pub sequence: String,
}

/// `get_target_ids`: each target's id in the vocabulary; a target that is not in it is
/// tokenized and replaced by its first token (`max_length=1`), and one that gives no token is
/// left out, each with transformers' warning (returned, for the caller to log). The ids come
/// back sorted, without repeats.
pub fn target_ids(tokenizer: &Tokenizer, targets: &[&str]) -> Result<(Vec<i64>, Vec<String>)> {
    let vocab = tokenizer.vocab();
    let mut ids = Vec::new();
    let mut warnings = Vec::new();
    let plan = tokenizer.plan(&Request {
        add_special_tokens: false,
        truncation: Some(Truncation::LongestFirst),
        max_length: Some(1),
        ..Request::default()
    })?;
    for target in targets {
        if let Some(&id) = vocab.get(*target) {
            ids.push(i64::from(id));
            continue;
        }
        let rows = tokenizer.encode_batch(&[target], None, &plan)?;
        match rows.input_ids.first() {
            None => warnings.push(format!(
                "The specified target token `{target}` does not exist in the model vocabulary. \
                 We cannot replace it with anything meaningful, ignoring it"
            )),
            Some(&id) => {
                let token = tokenizer.id_to_token(id as u32).unwrap_or_default();
                warnings.push(format!(
                    "The specified target token `{target}` does not exist in the model \
                     vocabulary. Replacing with `{token}`."
                ));
                ids.push(i64::from(id));
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Err(Error::value("At least one target must be provided when passed."));
    }
    Ok((ids, warnings))
}

/// The positions of the mask token in each row; a row without one is an error that names it.
pub fn mask_positions(
    rows: &[&[i32]],
    mask_token_id: u32,
    mask_token: &str,
    texts: &[&str],
) -> Result<Vec<Vec<usize>>> {
    rows.iter()
        .enumerate()
        .map(|(i, ids)| {
            let found: Vec<usize> =
                (0..ids.len()).filter(|&j| ids[j] as u32 == mask_token_id).collect();
            if found.is_empty() {
                let text = texts.get(i).copied().unwrap_or_default();
                let shown: String = text.chars().take(80).collect();
                let more = if text.chars().count() > 80 { "..." } else { "" };
                return Err(Error::value(format!(
                    "No mask_token ({mask_token}) found on the input {i}: {shown:?}{more}"
                )));
            }
            Ok(found)
        })
        .collect()
}

/// The `top_k` best (score, token) of each mask from the logits of the mask positions
/// ([masks, vocabulary], any kind, any device): torch's softmax over the vocabulary, restricted
/// to `targets` when given (then at most as many as there are targets), and `topk`.
pub fn top_tokens(
    mask_logits: &Tensor,
    top_k: usize,
    targets: Option<&[i64]>,
) -> Result<Vec<Vec<(f64, i64)>>> {
    let mut probs = mask_logits.to_device(tch::Device::Cpu).softmax(-1, None::<Kind>);
    let mut k = top_k;
    if let Some(targets) = targets {
        k = k.min(targets.len());
        let vocab = probs.size()[1];
        if let Some(&bad) = targets.iter().find(|&&t| t < 0 || t >= vocab) {
            return Err(Error::index(format!(
                "target token id {bad} is outside the model's {vocab} output logits"
            )));
        }
        probs = probs.index_select(1, &Tensor::from_slice(targets));
    }
    let available = probs.size()[1] as usize;
    if k > available {
        return Err(Error::value(format!(
            "top_k={top_k} asks for more candidates than the {available} tokens of the model's \
             vocabulary"
        )));
    }
    let (values, indices) = probs.topk(k as i64, -1, true, true);
    let values = values.to_kind(Kind::Double);
    let rows = values.size()[0];
    (0..rows)
        .map(|m| {
            let v: Vec<f64> = Vec::try_from(values.get(m))?;
            let p: Vec<i64> = Vec::try_from(indices.get(m))?;
            let p = match targets {
                Some(targets) => p.iter().map(|&j| targets[j as usize]).collect(),
                None => p,
            };
            Ok(v.into_iter().zip(p).collect())
        })
        .collect()
}

/// `postprocess`'s candidates of one row: `token_str` is the candidate decoded alone, and
/// `sequence` the row with the candidate in place of its mask, the padding left out, decoded
/// without special tokens when the row has one mask (with them otherwise, so the other masks
/// stay visible).
pub fn candidates(
    tokenizer: &Tokenizer,
    ids: &[i32],
    masks: &[usize],
    top: &[Vec<(f64, i64)>],
) -> Result<Vec<Vec<Candidate>>> {
    let single = masks.len() == 1;
    let pad = tokenizer.pad_token_id().map(i64::from);
    masks
        .iter()
        .zip(top)
        .map(|(&position, best)| {
            best.iter()
                .map(|&(score, token)| {
                    let sequence: Vec<u32> = ids
                        .iter()
                        .enumerate()
                        .map(|(j, &id)| if j == position { token } else { i64::from(id) })
                        .filter(|&id| Some(id) != pad)
                        .map(|id| id as u32)
                        .collect();
                    Ok(Candidate {
                        score,
                        token,
                        token_str: tokenizer.decode(&[token as u32], false, None)?,
                        sequence: tokenizer.decode(&sequence, single, None)?,
                    })
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_tokens_ranks_by_softmax_and_maps_targets_back() {
        let logits = Tensor::from_slice(&[0.0f32, 3.0, 1.0, 2.0]).view([1, 4]);
        let top = top_tokens(&logits, 2, None).unwrap();
        assert_eq!(top[0].iter().map(|t| t.1).collect::<Vec<_>>(), vec![1, 3]);
        let e: Vec<f64> = [0.0f64, 3.0, 1.0, 2.0].iter().map(|x| x.exp()).collect();
        let total: f64 = e.iter().sum();
        assert!((top[0][0].0 - e[1] / total).abs() < 1e-6);
        // Targets: scores stay those of the whole vocabulary; k is capped by the targets.
        let top = top_tokens(&logits, 5, Some(&[0, 2])).unwrap();
        assert_eq!(top[0].iter().map(|t| t.1).collect::<Vec<_>>(), vec![2, 0]);
        assert!((top[0][0].0 - e[2] / total).abs() < 1e-6);
    }

    #[test]
    fn too_many_candidates_and_bad_targets_are_errors() {
        let logits = Tensor::from_slice(&[0.0f32, 3.0]).view([1, 2]);
        let err = top_tokens(&logits, 3, None).unwrap_err().to_string();
        assert!(err.contains("top_k=3"), "{err}");
        let err = top_tokens(&logits, 1, Some(&[7])).unwrap_err().to_string();
        assert!(err.contains("7"), "{err}");
    }

    #[test]
    fn inputs_without_a_mask_are_named() {
        let rows: [&[i32]; 2] = [&[1, 5, 2], &[1, 6, 2]];
        let found = mask_positions(&rows[..1], 5, "[MASK]", &["a [MASK]"]).unwrap();
        assert_eq!(found, vec![vec![1]]);
        let err = mask_positions(&rows, 5, "[MASK]", &["a [MASK]", "no mask here"]).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("input 1") && err.contains("no mask here"), "{err}");
    }
}
