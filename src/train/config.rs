//! The configuration of a training run: what the Python `Trainer` takes from
//! `TrainingArguments`, the model and the tokenizer, as one plain mapping that the bindings
//! deserialize into this type (`_core.TrainingRun(model, examples, config)`). Every rule that
//! turns it into a run (sampling, schedule, warmup, precision) is in `Run::new`.

use super::data::{Labeling, PadSettings};
use crate::error::{Error, Result};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Examples per batch on this process (`per_device_train_batch_size`).
    pub batch_size: usize,
    /// `gradient_accumulation_steps`.
    pub grad_accum: usize,
    pub num_train_epochs: f64,
    /// Updates to run; ≤ 0: as many as the epochs make.
    pub max_steps: i64,
    /// `dataloader_drop_last`.
    pub drop_last: bool,
    /// `train_sampling_strategy`: "random", "sequential" or "group_by_length".
    pub sampling: String,
    /// The random sampler's seed (`data_seed`, or torch's initial seed).
    pub seed: u64,
    pub learning_rate: f64,
    pub lr_scheduler_type: String,
    /// Steps (≥ 1) or a ratio of the run (< 1).
    pub warmup_steps: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    pub max_grad_norm: f64,
    #[serde(default)]
    pub bf16: bool,
    /// float16 autocast with loss scaling (the caller turns it off on the CPU).
    #[serde(default)]
    pub fp16: bool,
    /// Whether callbacks may read the parameters' gradients: they handle the events at which
    /// transformers' parameters hold them (`on_pre_optimizer_step`, `on_optimizer_step`).
    #[serde(default)]
    pub callbacks_read_gradients: bool,
    /// Whether callbacks may read the weights or the optimizer's state during the steps: they
    /// handle events raised between two steps (not only evaluations and checkpoints, before
    /// which the caller settles the run, `run::settle`).
    #[serde(default)]
    pub callbacks_read_weights: bool,
    /// `logging_nan_inf_filter`.
    #[serde(default = "yes")]
    pub nan_inf_filter: bool,
    /// `config.problem_type`; None: inferred from the labels.
    #[serde(default)]
    pub problem_type: Option<String>,
    #[serde(default)]
    pub process_index: usize,
    #[serde(default = "one")]
    pub num_processes: usize,
    /// How batches are padded: the tokenizer's pad id (None: the model config's, else 0) and
    /// side, `pad_to_multiple_of`.
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    #[serde(default)]
    pub pad_left: bool,
    #[serde(default)]
    pub pad_to_multiple_of: Option<usize>,
    /// The data collator's labels: per-token label padding, language modeling.
    #[serde(default)]
    pub labeling: Labeling,
}

fn yes() -> bool {
    true
}

fn one() -> usize {
    1
}

impl TrainingConfig {
    pub fn padding(&self) -> PadSettings {
        PadSettings {
            pad_token_id: self.pad_token_id,
            pad_left: self.pad_left,
            pad_to_multiple_of: self.pad_to_multiple_of,
        }
    }

    /// From a JSON object (the bindings' mapping); a missing, unknown or mistyped key is a
    /// ValueError that names it.
    pub fn from_json(value: serde_json::Value) -> Result<TrainingConfig> {
        serde_json::from_value(value).map_err(|e| Error::value(format!("training config: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> serde_json::Value {
        json!({
            "batch_size": 8, "grad_accum": 1, "num_train_epochs": 3.0, "max_steps": -1,
            "drop_last": false, "sampling": "random", "seed": 42, "learning_rate": 5e-5,
            "lr_scheduler_type": "linear", "warmup_steps": 0.0, "weight_decay": 0.0,
            "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8, "max_grad_norm": 1.0
        })
    }

    #[test]
    fn defaults_are_a_single_process_in_float32() {
        let config = TrainingConfig::from_json(minimal()).unwrap();
        assert_eq!((config.process_index, config.num_processes), (0, 1));
        assert!(!config.bf16 && !config.fp16 && config.nan_inf_filter);
        assert_eq!(
            (config.pad_token_id, config.pad_left, config.pad_to_multiple_of),
            (None, false, None)
        );
    }

    #[test]
    fn bad_keys_are_named() {
        let mut unknown = minimal();
        unknown["batch_sise"] = json!(8);
        let err = TrainingConfig::from_json(unknown).unwrap_err().to_string();
        assert!(err.contains("unknown field `batch_sise`"), "{err}");
        let mut missing = minimal();
        missing.as_object_mut().unwrap().remove("seed");
        let err = TrainingConfig::from_json(missing).unwrap_err().to_string();
        assert!(err.contains("missing field `seed`"), "{err}");
        let mut mistyped = minimal();
        mistyped["batch_size"] = json!(-2);
        let err = TrainingConfig::from_json(mistyped).unwrap_err().to_string();
        assert!(err.contains("invalid value: integer `-2`"), "{err}");
    }
}
