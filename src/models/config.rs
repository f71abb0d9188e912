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
    DebertaV2,
}

/// What the model is trained for: the head on top of the encoder, its output and its loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// One prediction per sequence: logits [batch, num_labels].
    SequenceClassification,
    /// One prediction per token (NER): logits [batch, length, num_labels].
    TokenClassification,
    /// The masked-language-model head: logits [batch, length, vocab_size].
    MaskedLm,
}

impl Task {
    pub const ALL: [Task; 3] =
        [Task::SequenceClassification, Task::TokenClassification, Task::MaskedLm];

    /// The name the bindings use ("sequence-classification", ...).
    pub fn name(self) -> &'static str {
        match self {
            Task::SequenceClassification => "sequence-classification",
            Task::TokenClassification => "token-classification",
            Task::MaskedLm => "masked-lm",
        }
    }

    /// How transformers' class names end for this task.
    pub fn class_suffix(self) -> &'static str {
        match self {
            Task::SequenceClassification => "ForSequenceClassification",
            Task::TokenClassification => "ForTokenClassification",
            Task::MaskedLm => "ForMaskedLM",
        }
    }

    pub fn parse(name: &str) -> Result<Task> {
        Task::ALL.into_iter().find(|task| task.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Task::ALL.iter().map(|t| t.name()).collect();
            Error::value(format!("task {name:?} is not one of {}", names.join(", ")))
        })
    }
}

/// The `model_type`s ferrotune runs, in `Arch::ALL`'s order.
pub fn supported_model_types() -> Vec<&'static str> {
    Arch::ALL.iter().map(|arch| arch.model_type()).collect()
}

impl Arch {
    pub const ALL: [Arch; 7] = [
        Arch::Bert,
        Arch::Roberta,
        Arch::XlmRoberta,
        Arch::DistilBert,
        Arch::Electra,
        Arch::ModernBert,
        Arch::DebertaV2,
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
            Arch::DebertaV2 => "deberta-v2",
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
            Arch::DebertaV2 => "deberta",
        }
    }

    /// The transformers model name this architecture's classes start with ("XLMRoberta").
    pub fn class_stem(self) -> &'static str {
        match self {
            Arch::Bert => "Bert",
            Arch::Roberta => "Roberta",
            Arch::XlmRoberta => "XLMRoberta",
            Arch::DistilBert => "DistilBert",
            Arch::Electra => "Electra",
            Arch::ModernBert => "ModernBert",
            Arch::DebertaV2 => "DebertaV2",
        }
    }

    /// The transformers class of this architecture with the head of `task`, e.g.
    /// `BertForTokenClassification` (for reports and `architectures`).
    pub fn class_name(self, task: Task) -> String {
        format!("{}{}", self.class_stem(), task.class_suffix())
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
            // `DebertaV2Config`'s fields; the keys the model reads with `getattr` defaults
            // (`share_att_key`, `position_buckets`, `norm_rel_ebd`, `conv_kernel_size`,
            // `embedding_size`, `cls_dropout`, `pooler_hidden_size`) are read where they are used.
            Arch::DebertaV2 => json!({
                "vocab_size": 128100, "hidden_size": 1536, "num_hidden_layers": 24,
                "num_attention_heads": 24, "intermediate_size": 6144, "hidden_act": "gelu",
                "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                "max_position_embeddings": 512, "type_vocab_size": 0, "initializer_range": 0.02,
                "layer_norm_eps": 1e-7, "relative_attention": false,
                "max_relative_positions": -1, "pad_token_id": 0, "position_biased_input": true,
                "pos_att_type": null, "pooler_dropout": 0.0, "pooler_hidden_act": "gelu",
                "legacy": true,
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
    Tanh,
}

impl Activation {
    fn parse(name: &str) -> Result<Activation> {
        match name {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
            "tanh" => Ok(Activation::Tanh),
            other => Err(Error::not_implemented(format!(
                "activation {other:?} is not supported; use gelu, gelu_new, gelu_pytorch_tanh, \
                 gelu_fast, relu, silu, swish or tanh"
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
    /// The masked-LM decoder's weight is the word embedding table (transformers' default).
    pub tie_word_embeddings: bool,
    pub sinusoidal_positions: bool,
    /// What only ModernBERT has.
    pub modernbert: Option<ModernBertConfig>,
    /// What only DeBERTa-v2 (and v3) has.
    pub deberta: Option<DebertaConfig>,
}

/// DeBERTa-v2's settings beyond the common ones (`DebertaV2Config` and the keys
/// `modeling_deberta_v2.py` reads with `getattr` defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct DebertaConfig {
    /// Disentangled attention with the encoder's `rel_embeddings` (`relative_attention`).
    pub relative_attention: bool,
    /// `pos_att_type` holds "c2p" (content to position).
    pub c2p: bool,
    /// `pos_att_type` holds "p2c" (position to content).
    pub p2c: bool,
    /// `position_buckets`: log buckets of the relative positions when > 0.
    pub position_buckets: i64,
    /// `max_relative_positions`, `max_position_embeddings` when < 1.
    pub max_relative_positions: i64,
    /// Both position projections are the content ones (`share_att_key`); else `pos_key_proj`
    /// (c2p) and `pos_query_proj` (p2c).
    pub share_att_key: bool,
    /// `norm_rel_ebd` holds "layer_norm": the relative embeddings pass the encoder's LayerNorm.
    pub norm_rel_embeddings: bool,
    /// Absolute position embeddings added to the word embeddings (`position_biased_input`).
    pub position_biased_input: bool,
    pub pooler_activation: Activation,
    pub pooler_dropout: f64,
    /// The masked-LM head: `cls.predictions` (legacy, the default) or `lm_predictions.lm_head`.
    pub legacy: bool,
    /// The convolution after the first layer (`conv_kernel_size` > 0).
    pub conv: Option<ConvConfig>,
}

impl DebertaConfig {
    /// Rows of `rel_embeddings` on each side: `position_buckets` when > 0, else
    /// `max_relative_positions` (`pos_ebd_size`, the attention span).
    pub fn attention_span(&self) -> i64 {
        if self.position_buckets > 0 {
            self.position_buckets
        } else {
            self.max_relative_positions
        }
    }

    /// The number of score terms: content to content and each relative one, as transformers
    /// counts them (from `pos_att_type`, even without `relative_attention`).
    pub fn scale_factor(&self) -> i64 {
        1 + self.c2p as i64 + self.p2c as i64
    }
}

/// DeBERTa-v2's `ConvLayer`: a 1-D convolution over the sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvConfig {
    pub kernel_size: i64,
    pub groups: i64,
    pub activation: Activation,
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
    /// The masked-LM decoder's bias.
    pub decoder_bias: bool,
    /// The masked-LM head computes logits only where the labels are not
    /// `sparse_pred_ignore_index` (when labels are given).
    pub sparse_prediction: bool,
    pub sparse_pred_ignore_index: i64,
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

    fn int(&self, key: &str) -> Result<i64> {
        let value = self.get(key)?;
        value
            .as_i64()
            .ok_or_else(|| Error::value(format!("config {key:?} must be an integer, got {value}")))
    }

    /// `tie_word_embeddings`, true unless the config says otherwise (PretrainedConfig's default).
    fn tie_word_embeddings(&self) -> Result<bool> {
        match self.0.get("tie_word_embeddings") {
            None | Some(Value::Null) => Ok(true),
            Some(_) => self.boolean("tie_word_embeddings"),
        }
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
            decoder_bias: self.boolean("decoder_bias")?,
            sparse_prediction: self.boolean("sparse_prediction")?,
            sparse_pred_ignore_index: self.int("sparse_pred_ignore_index")?,
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

impl Fields<'_> {
    /// A key read with `getattr(config, key, default)`: its value, or `default` when absent.
    fn or_default<'a>(&'a self, key: &str, default: &'a Value) -> &'a Value {
        self.0.get(key).unwrap_or(default)
    }

    /// DeBERTa-v2's settings (`DisentangledSelfAttention`, `DebertaV2Encoder`, `ContextPooler`).
    fn deberta(&self, hidden_size: i64, max_positions: i64) -> Result<DebertaConfig> {
        let pos_att_type: Vec<String> = match self.0.get("pos_att_type") {
            None | Some(Value::Null) => Vec::new(),
            // The older form "p2c|c2p" (`DebertaV2Config.__post_init__`).
            Some(Value::String(s)) => {
                s.to_lowercase().split('|').map(|t| t.trim().into()).collect()
            }
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| {
                    t.as_str().map(String::from).ok_or_else(|| {
                        Error::value(format!("config \"pos_att_type\" must hold strings, got {t}"))
                    })
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(Error::value(format!(
                    "config \"pos_att_type\" must be a list such as [\"p2c\", \"c2p\"], got {other}"
                )))
            }
        };
        if let Some(bad) = pos_att_type.iter().find(|t| !matches!(t.as_str(), "c2p" | "p2c")) {
            return Err(Error::value(format!(
                "config \"pos_att_type\" holds {bad:?}; ferrotune supports \"c2p\" and \"p2c\""
            )));
        }
        let has = |name: &str| pos_att_type.iter().any(|t| t == name);
        let norm = match self.or_default("norm_rel_ebd", &json!("none")) {
            Value::String(s) => s.to_lowercase().split('|').map(|t| t.trim().to_string()).collect(),
            other => {
                return Err(Error::value(format!(
                    "config \"norm_rel_ebd\" must be a string, got {other}"
                )))
            }
        };
        let norm: Vec<String> = norm;
        if let Some(bad) = norm.iter().find(|t| !matches!(t.as_str(), "none" | "layer_norm")) {
            return Err(Error::value(format!(
                "config \"norm_rel_ebd\" holds {bad:?}; ferrotune supports \"none\" and \
                 \"layer_norm\""
            )));
        }
        let int = |key: &str, default: i64| -> Result<i64> {
            match self.0.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v.as_i64().ok_or_else(|| {
                    Error::value(format!("config {key:?} must be an integer, got {v}"))
                }),
            }
        };
        let boolean = |key: &str, default: bool| -> Result<bool> {
            match self.0.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(_) => self.boolean(key),
            }
        };
        let max_relative_positions = match int("max_relative_positions", -1)? {
            m if m < 1 => max_positions,
            m => m,
        };
        let kernel_size = int("conv_kernel_size", 0)?;
        let conv = if kernel_size > 0 {
            if kernel_size % 2 == 0 {
                return Err(Error::value(format!(
                    "config \"conv_kernel_size\" must be odd (the convolution keeps the sequence \
                     length only then), got {kernel_size}"
                )));
            }
            let groups = int("conv_groups", 1)?;
            if groups < 1 || hidden_size % groups != 0 {
                return Err(Error::value(format!(
                    "config \"conv_groups\" must divide the hidden size ({hidden_size}), got \
                     {groups}"
                )));
            }
            let activation = match self.0.get("conv_act") {
                None | Some(Value::Null) => Activation::Tanh,
                Some(_) => Activation::parse(self.string("conv_act")?)?,
            };
            Some(ConvConfig { kernel_size, groups, activation })
        } else {
            None
        };
        if let Some(size) = self.optional_int("pooler_hidden_size")? {
            if size != hidden_size {
                return Err(Error::value(format!(
                    "config \"pooler_hidden_size\" ({size}) must equal the hidden size \
                     ({hidden_size}): the classifier reads the pooler's output at the hidden size"
                )));
            }
        }
        if let Some(size) = self.optional_int("attention_head_size")? {
            let heads = self.positive_int("num_attention_heads")?;
            if size * heads != hidden_size {
                return Err(Error::value(format!(
                    "config \"attention_head_size\" {size} is not supported: ferrotune needs \
                     heads × head size = hidden size ({hidden_size})"
                )));
            }
        }
        Ok(DebertaConfig {
            relative_attention: self.boolean("relative_attention")?,
            c2p: has("c2p"),
            p2c: has("p2c"),
            position_buckets: int("position_buckets", -1)?,
            max_relative_positions,
            share_att_key: boolean("share_att_key", false)?,
            norm_rel_embeddings: norm.iter().any(|t| t == "layer_norm"),
            position_biased_input: self.boolean("position_biased_input")?,
            pooler_activation: Activation::parse(self.string("pooler_hidden_act")?)?,
            pooler_dropout: self.probability("pooler_dropout")?,
            legacy: self.boolean("legacy")?,
            conv,
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
                tie_word_embeddings: f.tie_word_embeddings()?,
                sinusoidal_positions: f.get("sinusoidal_pos_embds")?.as_bool().unwrap_or(false),
                modernbert: None,
                deberta: None,
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
                    tie_word_embeddings: f.tie_word_embeddings()?,
                    sinusoidal_positions: false,
                    modernbert: Some(f.modernbert(num_layers)?),
                    deberta: None,
                }
            }
            Arch::DebertaV2 => {
                let hidden_size = f.positive_int("hidden_size")?;
                let hidden_dropout = f.probability("hidden_dropout_prob")?;
                let max_positions = f.positive_int("max_position_embeddings")?;
                ModelConfig {
                    arch,
                    vocab_size,
                    embedding_size: match completed.get("embedding_size") {
                        None | Some(Value::Null) => hidden_size,
                        Some(_) => f.positive_int("embedding_size")?,
                    },
                    hidden_size,
                    num_layers: f.positive_int("num_hidden_layers")?,
                    num_heads: f.positive_int("num_attention_heads")?,
                    intermediate_size: f.positive_int("intermediate_size")?,
                    activation: Activation::parse(f.string("hidden_act")?)?,
                    hidden_dropout,
                    attention_dropout: f.probability("attention_probs_dropout_prob")?,
                    // `cls_dropout`, else hidden_dropout_prob.
                    classifier_dropout: match completed.get("cls_dropout") {
                        None | Some(Value::Null) => hidden_dropout,
                        Some(_) => f.probability("cls_dropout")?,
                    },
                    max_position_embeddings: max_positions,
                    type_vocab_size: f.int_at_least("type_vocab_size", 0)?,
                    layer_norm_eps: f.positive_float("layer_norm_eps")?,
                    pad_token_id,
                    initializer_range: f.positive_float("initializer_range")?,
                    num_labels: f.num_labels()?,
                    tie_word_embeddings: f.tie_word_embeddings()?,
                    sinusoidal_positions: false,
                    modernbert: None,
                    deberta: Some(f.deberta(hidden_size, max_positions)?),
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
                    tie_word_embeddings: f.tie_word_embeddings()?,
                    sinusoidal_positions: false,
                    modernbert: None,
                    deberta: None,
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
    /// ModernBERT. DeBERTa-v2 takes them even without token type embeddings (and ignores
    /// them then).
    pub fn input_names(&self) -> Vec<&'static str> {
        let mut names = vec!["input_ids", "attention_mask"];
        if self.type_vocab_size > 0 || self.deberta.is_some() {
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
    fn deberta_settings_and_their_errors() {
        let cfg = ModelConfig::from_json(&json!({"model_type": "deberta-v2", "hidden_size": 64,
            "num_attention_heads": 4, "relative_attention": true, "pos_att_type": "p2c|c2p",
            "position_buckets": 256, "embedding_size": 32, "cls_dropout": 0.3}))
        .unwrap();
        let d = cfg.deberta.clone().unwrap();
        assert!(d.c2p && d.p2c && d.relative_attention && d.position_biased_input);
        assert!(!d.share_att_key && !d.norm_rel_embeddings && d.conv.is_none());
        assert_eq!((d.max_relative_positions, d.attention_span(), d.scale_factor()), (512, 256, 3));
        assert_eq!((cfg.embedding_size, cfg.classifier_dropout, cfg.type_vocab_size), (32, 0.3, 0));
        assert_eq!(cfg.input_names(), ["input_ids", "attention_mask", "token_type_ids"]);
        let err = |extra: Value| {
            let mut config = json!({"model_type": "deberta-v2"});
            config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            ModelConfig::from_json(&config).unwrap_err().to_string()
        };
        assert_eq!(
            err(json!({"pos_att_type": ["c2p", "p2p"]})),
            "config \"pos_att_type\" holds \"p2p\"; ferrotune supports \"c2p\" and \"p2c\""
        );
        assert!(
            err(json!({"norm_rel_ebd": "layer_norm|x"})).contains("\"norm_rel_ebd\" holds \"x\"")
        );
        assert!(err(json!({"conv_kernel_size": 2})).contains("conv_kernel_size"));
    }

    #[test]
    fn unsupported_model_type_lists_the_supported_ones() {
        let err = ModelConfig::from_json(&json!({"model_type": "gpt2"})).unwrap_err();
        assert!(matches!(err, Error::NotImplemented(_)));
        assert_eq!(
            err.to_string(),
            "model_type \"gpt2\" is not supported; ferrotune supports bert, roberta, xlm-roberta, \
             distilbert, electra, modernbert, deberta-v2"
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
