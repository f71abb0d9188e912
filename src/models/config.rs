//! `config.json` of the supported encoders, read into one normalized `ModelConfig`.
//!
//! Defaults are those of transformers' config classes (`configuration_bert.py`,
//! `configuration_roberta.py`, `configuration_xlm_roberta.py`, `configuration_distilbert.py`,
//! `configuration_electra.py`, `configuration_modernbert.py`);
//! `complete` fills them into a config so the Python side sees every field.

use crate::error::{Error, Result};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Bert,
    Roberta,
    XlmRoberta,
    DistilBert,
    Electra,
    ModernBert,
}

/// The `model_type`s ferrotune runs, in `Arch::ALL`'s order.
pub fn supported_model_types() -> Vec<&'static str> {
    Arch::ALL.iter().map(|arch| arch.model_type()).collect()
}

impl Arch {
    pub const ALL: [Arch; 6] = [
        Arch::Bert,
        Arch::Roberta,
        Arch::XlmRoberta,
        Arch::DistilBert,
        Arch::Electra,
        Arch::ModernBert,
    ];

    /// The `model_type` of `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Bert => "bert",
            Arch::Roberta => "roberta",
            Arch::XlmRoberta => "xlm-roberta",
            Arch::DistilBert => "distilbert",
            Arch::Electra => "electra",
            Arch::ModernBert => "modernbert",
        }
    }

    pub fn from_model_type(model_type: &str) -> Result<Arch> {
        Arch::ALL.into_iter().find(|arch| arch.model_type() == model_type).ok_or_else(|| {
            Error::not_implemented(format!(
                "model_type {model_type:?} is not supported; ferrotune supports {}",
                supported_model_types().join(", ")
            ))
        })
    }

    /// `base_model_prefix` of the transformers class: the state-dict prefix of the encoder.
    pub fn prefix(self) -> &'static str {
        match self {
            Arch::Bert => "bert",
            Arch::Roberta | Arch::XlmRoberta => "roberta",
            Arch::DistilBert => "distilbert",
            Arch::Electra => "electra",
            Arch::ModernBert => "model",
        }
    }

    /// The transformers class this model corresponds to (for reports and `architectures`).
    pub fn class_name(self) -> &'static str {
        match self {
            Arch::Bert => "BertForSequenceClassification",
            Arch::Roberta => "RobertaForSequenceClassification",
            Arch::XlmRoberta => "XLMRobertaForSequenceClassification",
            Arch::DistilBert => "DistilBertForSequenceClassification",
            Arch::Electra => "ElectraForSequenceClassification",
            Arch::ModernBert => "ModernBertForSequenceClassification",
        }
    }

    fn defaults(self) -> Value {
        match self {
            Arch::Bert => json!({
                "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
                "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02,
                "layer_norm_eps": 1e-12, "pad_token_id": 0, "classifier_dropout": null,
            }),
            Arch::Roberta | Arch::XlmRoberta => json!({
                "vocab_size": if self == Arch::Roberta { 50265 } else { 30522 },
                "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
                "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
                "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
                "classifier_dropout": null,
            }),
            Arch::DistilBert => json!({
                "vocab_size": 30522, "max_position_embeddings": 512,
                "sinusoidal_pos_embds": false, "n_layers": 6, "n_heads": 12, "dim": 768,
                "hidden_dim": 3072, "dropout": 0.1, "attention_dropout": 0.1,
                "activation": "gelu", "initializer_range": 0.02, "qa_dropout": 0.1,
                "seq_classif_dropout": 0.2, "pad_token_id": 0,
            }),
            Arch::Electra => json!({
                "vocab_size": 30522, "embedding_size": 128, "hidden_size": 256,
                "num_hidden_layers": 12, "num_attention_heads": 4, "intermediate_size": 1024,
                "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
                "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
                "summary_type": "first", "summary_use_proj": true, "summary_activation": "gelu",
                "summary_last_dropout": 0.1, "pad_token_id": 0, "classifier_dropout": null,
            }),
            // `layer_types` and `rope_parameters` are derived from these when a config (older
            // checkpoints) does not have them.
            Arch::ModernBert => json!({
                "vocab_size": 50368, "hidden_size": 768, "intermediate_size": 1152,
                "num_hidden_layers": 22, "num_attention_heads": 12, "hidden_activation": "gelu",
                "max_position_embeddings": 8192, "initializer_range": 0.02,
                "initializer_cutoff_factor": 2.0, "norm_eps": 1e-5, "norm_bias": false,
                "pad_token_id": 50283, "eos_token_id": 50282, "bos_token_id": 50281,
                "cls_token_id": 50281, "sep_token_id": 50282, "attention_bias": false,
                "attention_dropout": 0.0, "global_attn_every_n_layers": 3,
                "local_attention": 128, "global_rope_theta": 160_000.0,
                "local_rope_theta": 10_000.0, "embedding_dropout": 0.0, "mlp_bias": false,
                "mlp_dropout": 0.0, "decoder_bias": true, "classifier_pooling": "cls",
                "classifier_dropout": 0.0, "classifier_bias": false,
                "classifier_activation": "gelu", "sparse_prediction": false,
                "sparse_pred_ignore_index": -100,
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU (erf), transformers' "gelu".
    Gelu,
    /// tanh approximation: "gelu_new", "gelu_pytorch_tanh", "gelu_fast".
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    fn parse(name: &str) -> Result<Activation> {
        match name {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
            other => Err(Error::not_implemented(format!(
                "activation {other:?} is not supported; use gelu, gelu_new, gelu_pytorch_tanh, \
                 gelu_fast, relu, silu or swish"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: i64,
    /// The width of the embeddings: ELECTRA's `embedding_size`, projected to `hidden_size`
    /// when they differ; the hidden size for the other models.
    pub embedding_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub intermediate_size: i64,
    pub activation: Activation,
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
    /// Dropout before the classifier (classifier_dropout or hidden_dropout_prob;
    /// DistilBERT: seq_classif_dropout).
    pub classifier_dropout: f64,
    pub max_position_embeddings: i64,
    /// 0 where the model has no token type embeddings (DistilBERT).
    pub type_vocab_size: i64,
    pub layer_norm_eps: f64,
    pub pad_token_id: Option<i64>,
    pub initializer_range: f64,
    pub num_labels: i64,
    pub sinusoidal_positions: bool,
    /// What only ModernBERT has.
    pub modernbert: Option<ModernBertConfig>,
}

/// How ModernBERT's classifier pools the last hidden states (`classifier_pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's state.
    Cls,
    /// The mean over the attended tokens.
    Mean,
}

/// ModernBERT's settings beyond the common ones (`ModernBertConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModernBertConfig {
    /// Per layer: true for global (full) attention, false for the sliding window.
    pub global_layers: Vec<bool>,
    /// RoPE bases (`rope_parameters[...]["rope_theta"]`) of the global and the sliding layers.
    pub global_rope_theta: f64,
    pub local_rope_theta: f64,
    /// A sliding layer's token sees the tokens at most this far (`local_attention // 2`).
    pub sliding_window: i64,
    pub norm_bias: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub classifier_bias: bool,
    pub classifier_activation: Activation,
    pub pooling: Pooling,
    pub embedding_dropout: f64,
    pub mlp_dropout: f64,
    pub initializer_cutoff_factor: f64,
}

/// `config` with the defaults of its model type filled in where keys are missing.
pub fn complete(config: &Value) -> Result<Value> {
    let arch = Arch::from_model_type(model_type(config)?)?;
    let mut merged = config.as_object().cloned().unwrap_or_default();
    if let Value::Object(defaults) = arch.defaults() {
        for (key, value) in defaults {
            merged.entry(key).or_insert(value);
        }
    }
    Ok(Value::Object(merged))
}

fn model_type(config: &Value) -> Result<&str> {
    let object = config
        .as_object()
        .ok_or_else(|| Error::value(format!("a config must be a JSON object, got {config}")))?;
    match object.get("model_type") {
        Some(Value::String(s)) => Ok(s),
        Some(other) => {
            Err(Error::value(format!("config 'model_type' must be a string, got {other}")))
        }
        None => Err(Error::value(format!(
            "config has no 'model_type'; ferrotune supports {}",
            supported_model_types().join(", ")
        ))),
    }
}

/// Typed access to the keys of a completed config, with errors that name the key.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        self.0.get(key).ok_or_else(|| Error::value(format!("config is missing {key:?}")))
    }

    fn positive_int(&self, key: &str) -> Result<i64> {
        self.int_at_least(key, 1)
    }

    fn int_at_least(&self, key: &str, min: i64) -> Result<i64> {
        match self.get(key)?.as_i64() {
            Some(v) if v >= min => Ok(v),
            _ => {
                let what = if min == 1 {
                    "a positive integer".to_string()
                } else {
                    format!("an integer >= {min}")
                };
                Err(Error::value(format!("config {key:?} must be {what}, got {}", self.get(key)?)))
            }
        }
    }

    fn probability(&self, key: &str) -> Result<f64> {
        match self.get(key)?.as_f64() {
            Some(p) if (0.0..1.0).contains(&p) => Ok(p),
            _ => Err(Error::value(format!(
                "config {key:?} must be a probability in [0, 1), got {}",
                self.get(key)?
            ))),
        }
    }

    fn positive_float(&self, key: &str) -> Result<f64> {
        match self.get(key)?.as_f64() {
            Some(v) if v > 0.0 && v.is_finite() => Ok(v),
            _ => Err(Error::value(format!(
                "config {key:?} must be a positive number, got {}",
                self.get(key)?
            ))),
        }
    }

    fn string(&self, key: &str) -> Result<&str> {
        self.get(key)?.as_str().ok_or_else(|| {
            Error::value(format!("config {key:?} must be a string, got {}", self.0[key]))
        })
    }

    fn boolean(&self, key: &str) -> Result<bool> {
        self.get(key)?.as_bool().ok_or_else(|| {
            Error::value(format!("config {key:?} must be true or false, got {}", self.0[key]))
        })
    }

    fn optional_int(&self, key: &str) -> Result<Option<i64>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                Error::value(format!("config {key:?} must be an integer or null, got {v}"))
            }),
        }
    }

    /// The number of labels: from `id2label` when present, else `num_labels`, else 2
    /// (transformers' PreTrainedConfig default).
    fn num_labels(&self) -> Result<i64> {
        if let Some(Value::Object(id2label)) = self.0.get("id2label") {
            if !id2label.is_empty() {
                return Ok(id2label.len() as i64);
            }
        }
        match self.0.get("num_labels") {
            None | Some(Value::Null) => Ok(2),
            Some(_) => self.positive_int("num_labels"),
        }
    }
}

impl Fields<'_> {
    /// ModernBERT's settings: `layer_types` and `rope_parameters` as transformers 5 writes them,
    /// or, in older configs, `global_attn_every_n_layers` and `global_rope_theta` /
    /// `local_rope_theta` (`ModernBertConfig.__post_init__`, `convert_rope_params_to_dict`).
    fn modernbert(&self, num_layers: i64) -> Result<ModernBertConfig> {
        let global_layers = match self.0.get("layer_types") {
            Some(Value::Array(types)) => {
                if types.len() as i64 != num_layers {
                    return Err(Error::value(format!(
                        "config \"layer_types\" has {} entries for {num_layers} layers",
                        types.len()
                    )));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        Some("full_attention") => Ok(true),
                        Some("sliding_attention") => Ok(false),
                        _ => Err(Error::value(format!(
                            "config \"layer_types\" holds {t}; expected \"full_attention\" or \
                             \"sliding_attention\""
                        ))),
                    })
                    .collect::<Result<Vec<bool>>>()?
            }
            None | Some(Value::Null) => {
                let every = self.positive_int("global_attn_every_n_layers")?;
                (0..num_layers).map(|i| i % every == 0).collect()
            }
            Some(other) => {
                return Err(Error::value(format!(
                    "config \"layer_types\" must be a list, got {other}"
                )))
            }
        };
        let theta = |layer_type: &str, old_key: &str| -> Result<f64> {
            let rope = self.0.get("rope_parameters").and_then(|r| r.get(layer_type));
            if let Some(kind) = rope.and_then(|r| r.get("rope_type")).and_then(Value::as_str) {
                if kind != "default" {
                    return Err(Error::not_implemented(format!(
                        "rope_type {kind:?} ({layer_type}) is not supported; ferrotune runs the \
                         default rotary embeddings"
                    )));
                }
            }
            match rope.and_then(|r| r.get("rope_theta")) {
                Some(value) => value.as_f64().filter(|v| *v > 0.0).ok_or_else(|| {
                    Error::value(format!(
                        "config \"rope_parameters\".{layer_type}.rope_theta must be a positive \
                         number, got {value}"
                    ))
                }),
                None => self.positive_float(old_key),
            }
        };
        let pooling = match self.string("classifier_pooling")? {
            "cls" => Pooling::Cls,
            "mean" => Pooling::Mean,
            other => {
                return Err(Error::value(format!(
                    "config \"classifier_pooling\" must be \"cls\" or \"mean\", got {other:?}"
                )))
            }
        };
        Ok(ModernBertConfig {
            global_layers,
            global_rope_theta: theta("full_attention", "global_rope_theta")?,
            local_rope_theta: theta("sliding_attention", "local_rope_theta")?,
            sliding_window: self.positive_int("local_attention")? / 2,
            norm_bias: self.boolean("norm_bias")?,
            attention_bias: self.boolean("attention_bias")?,
            mlp_bias: self.boolean("mlp_bias")?,
            classifier_bias: self.boolean("classifier_bias")?,
            classifier_activation: Activation::parse(self.string("classifier_activation")?)?,
            pooling,
            embedding_dropout: self.probability("embedding_dropout")?,
            mlp_dropout: self.probability("mlp_dropout")?,
            // `_init_weights`: None means 3.
            initializer_cutoff_factor: match self.0.get("initializer_cutoff_factor") {
                None | Some(Value::Null) => 3.0,
                Some(_) => self.positive_float("initializer_cutoff_factor")?,
            },
        })
    }
}

impl ModelConfig {
    /// Reads a config (as from config.json); missing keys take their model type's defaults.
    pub fn from_json(config: &Value) -> Result<ModelConfig> {
        let completed = complete(config)?;
        let arch = Arch::from_model_type(model_type(&completed)?)?;
        let f = Fields(completed.as_object().expect("complete() returns an object"));
        let pad_token_id = f.optional_int("pad_token_id")?;
        let vocab_size = f.positive_int("vocab_size")?;
        if let Some(pad) = pad_token_id {
            if !(0..vocab_size).contains(&pad) {
                return Err(Error::value(format!(
                    "config \"pad_token_id\" {pad} is outside the vocabulary (vocab_size {vocab_size})"
                )));
            }
        }
        let config = match arch {
            Arch::DistilBert => ModelConfig {
                arch,
                vocab_size,
                embedding_size: f.positive_int("dim")?,
                hidden_size: f.positive_int("dim")?,
                num_layers: f.positive_int("n_layers")?,
                num_heads: f.positive_int("n_heads")?,
                intermediate_size: f.positive_int("hidden_dim")?,
                activation: Activation::parse(f.string("activation")?)?,
                hidden_dropout: f.probability("dropout")?,
                attention_dropout: f.probability("attention_dropout")?,
                classifier_dropout: f.probability("seq_classif_dropout")?,
                max_position_embeddings: f.positive_int("max_position_embeddings")?,
                type_vocab_size: 0,
                // modeling_distilbert.py: nn.LayerNorm(config.dim, eps=1e-12), not configurable
                layer_norm_eps: 1e-12,
                pad_token_id,
                initializer_range: f.positive_float("initializer_range")?,
                num_labels: f.num_labels()?,
                sinusoidal_positions: f.get("sinusoidal_pos_embds")?.as_bool().unwrap_or(false),
                modernbert: None,
            },
            Arch::ModernBert => {
                let hidden_size = f.positive_int("hidden_size")?;
                let num_layers = f.positive_int("num_hidden_layers")?;
                ModelConfig {
                    arch,
                    vocab_size,
                    embedding_size: hidden_size,
                    hidden_size,
                    num_layers,
                    num_heads: f.positive_int("num_attention_heads")?,
                    intermediate_size: f.positive_int("intermediate_size")?,
                    activation: Activation::parse(f.string("hidden_activation")?)?,
                    hidden_dropout: f.probability("mlp_dropout")?,
                    attention_dropout: f.probability("attention_dropout")?,
                    classifier_dropout: f.probability("classifier_dropout")?,
                    max_position_embeddings: f.positive_int("max_position_embeddings")?,
                    type_vocab_size: 0,
                    layer_norm_eps: f.positive_float("norm_eps")?,
                    pad_token_id,
                    initializer_range: f.positive_float("initializer_range")?,
                    num_labels: f.num_labels()?,
                    sinusoidal_positions: false,
                    modernbert: Some(f.modernbert(num_layers)?),
                }
            }
            Arch::Bert | Arch::Roberta | Arch::XlmRoberta | Arch::Electra => {
                let hidden_dropout = f.probability("hidden_dropout_prob")?;
                let classifier_dropout = match f.get("classifier_dropout")? {
                    Value::Null => hidden_dropout,
                    _ => f.probability("classifier_dropout")?,
                };
                if matches!(arch, Arch::Roberta | Arch::XlmRoberta) && pad_token_id.is_none() {
                    return Err(Error::value(
                        "config \"pad_token_id\" must be set for RoBERTa models: their position \
                         ids start after it",
                    ));
                }
                let hidden_size = f.positive_int("hidden_size")?;
                ModelConfig {
                    arch,
                    vocab_size,
                    embedding_size: match arch {
                        Arch::Electra => f.positive_int("embedding_size")?,
                        _ => hidden_size,
                    },
                    hidden_size,
                    num_layers: f.positive_int("num_hidden_layers")?,
                    num_heads: f.positive_int("num_attention_heads")?,
                    intermediate_size: f.positive_int("intermediate_size")?,
                    activation: Activation::parse(f.string("hidden_act")?)?,
                    hidden_dropout,
                    attention_dropout: f.probability("attention_probs_dropout_prob")?,
                    classifier_dropout,
                    max_position_embeddings: f.positive_int("max_position_embeddings")?,
                    type_vocab_size: f.int_at_least("type_vocab_size", 1)?,
                    layer_norm_eps: f.positive_float("layer_norm_eps")?,
                    pad_token_id,
                    initializer_range: f.positive_float("initializer_range")?,
                    num_labels: f.num_labels()?,
                    sinusoidal_positions: false,
                    modernbert: None,
                }
            }
        };
        if config.hidden_size % config.num_heads != 0 {
            return Err(Error::value(format!(
                "the hidden size ({}) is not a multiple of the number of attention heads ({})",
                config.hidden_size, config.num_heads
            )));
        }
        Ok(config)
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_heads
    }

    /// The tokenized columns the model's `forward` takes, which the Trainer keeps of a dataset
    /// (transformers' `_remove_unused_columns`): no `token_type_ids` for DistilBERT and
    /// ModernBERT.
    pub fn input_names(&self) -> Vec<&'static str> {
        let mut names = vec!["input_ids", "attention_mask"];
        if self.type_vocab_size > 0 {
            names.push("token_type_ids");
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minilm_like_bert_config_reads_with_defaults() {
        let cfg = ModelConfig::from_json(&json!({
            "model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6,
            "intermediate_size": 1536, "vocab_size": 30522
        }))
        .unwrap();
        assert_eq!(cfg.arch, Arch::Bert);
        assert_eq!((cfg.hidden_size, cfg.num_layers, cfg.num_heads), (384, 6, 12));
        assert_eq!(cfg.head_dim(), 32);
        assert_eq!(cfg.classifier_dropout, 0.1);
        assert_eq!(cfg.num_labels, 2);
        assert_eq!(cfg.pad_token_id, Some(0));
    }

    #[test]
    fn distilbert_names_are_normalized() {
        let cfg = ModelConfig::from_json(&json!({"model_type": "distilbert", "dim": 64,
            "n_heads": 4, "n_layers": 2, "hidden_dim": 128,
            "id2label": {"0": "a", "1": "b", "2": "c"}}))
        .unwrap();
        assert_eq!((cfg.hidden_size, cfg.num_heads, cfg.num_layers), (64, 4, 2));
        assert_eq!(cfg.intermediate_size, 128);
        assert_eq!(cfg.type_vocab_size, 0);
        assert_eq!(cfg.classifier_dropout, 0.2);
        assert_eq!(cfg.num_labels, 3);
    }

    #[test]
    fn electra_keeps_its_embedding_size() {
        let cfg = ModelConfig::from_json(&json!({"model_type": "electra"})).unwrap();
        assert_eq!((cfg.embedding_size, cfg.hidden_size, cfg.num_heads), (128, 256, 4));
        assert_eq!((cfg.pad_token_id, cfg.type_vocab_size), (Some(0), 2));
        assert_eq!(Arch::from_model_type("electra").unwrap().prefix(), "electra");
        let bert = ModelConfig::from_json(&json!({"model_type": "bert", "embedding_size": 8}));
        assert_eq!(bert.unwrap().embedding_size, 768, "only ELECTRA reads embedding_size");
    }

    #[test]
    fn modernbert_layer_types_and_rope_from_either_form() {
        let old =
            ModelConfig::from_json(&json!({"model_type": "modernbert", "num_hidden_layers": 4,
            "global_attn_every_n_layers": 2, "local_rope_theta": 5.0}))
            .unwrap();
        let m = old.modernbert.clone().unwrap();
        assert_eq!(m.global_layers, [true, false, true, false]);
        assert_eq!(
            (m.global_rope_theta, m.local_rope_theta, m.sliding_window),
            (160_000.0, 5.0, 64)
        );
        assert_eq!((old.type_vocab_size, old.layer_norm_eps), (0, 1e-5));
        assert_eq!(old.input_names(), ["input_ids", "attention_mask"]);
        let new =
            ModelConfig::from_json(&json!({"model_type": "modernbert", "num_hidden_layers": 2,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 7.0}}}))
            .unwrap();
        let m = new.modernbert.unwrap();
        assert_eq!(m.global_layers, [false, true]);
        assert_eq!((m.global_rope_theta, m.local_rope_theta), (7.0, 10_000.0));
        let err =
            ModelConfig::from_json(&json!({"model_type": "modernbert", "num_hidden_layers": 3,
            "layer_types": ["full_attention"]}))
            .unwrap_err();
        assert_eq!(err.to_string(), "config \"layer_types\" has 1 entries for 3 layers");
    }

    #[test]
    fn unsupported_model_type_lists_the_supported_ones() {
        let err = ModelConfig::from_json(&json!({"model_type": "gpt2"})).unwrap_err();
        assert!(matches!(err, Error::NotImplemented(_)));
        assert_eq!(
            err.to_string(),
            "model_type \"gpt2\" is not supported; ferrotune supports bert, roberta, xlm-roberta, \
             distilbert, electra, modernbert"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = ModelConfig::from_json(&json!({"model_type": "bert", "hidden_size": "big"}))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "config \"hidden_size\" must be a positive integer, got \"big\""
        );
        let err =
            ModelConfig::from_json(&json!({"model_type": "bert", "hidden_size": 100})).unwrap_err();
        assert!(err.to_string().contains("(100) is not a multiple"), "{err}");
        let err =
            ModelConfig::from_json(&json!({"model_type": "bert", "hidden_dropout_prob": 1.5}))
                .unwrap_err();
        assert!(err.to_string().contains("hidden_dropout_prob"), "{err}");
    }

    #[test]
    fn complete_keeps_given_values_and_key_order() {
        let done = complete(&json!({"model_type": "roberta", "vocab_size": 1000})).unwrap();
        assert_eq!(done["vocab_size"], 1000);
        assert_eq!(done["pad_token_id"], 1);
        assert_eq!(done.as_object().unwrap().keys().next().unwrap(), "model_type");
    }
}
