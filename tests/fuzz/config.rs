//! Fuzzing `config.json` reading (src/models/config.rs): arbitrary bytes through
//! `serde_json::from_slice`, arbitrary JSON values, and valid BERT / RoBERTa / DistilBERT
//! configs with keys deleted, replaced and inserted. Property: `ModelConfig::from_json` and
//! `complete` return Ok or an Err with a message, never panic; an Ok config is one a model can
//! be built from.

#[path = "common.rs"]
mod common;

use common::{fuzz, nonempty_message};
use ferrotune::models::config::{complete, ModelConfig};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Number, Value};

/// bert-base-uncased's config.json as transformers writes it.
fn bert_config() -> Value {
    json!({
        "architectures": ["BertForMaskedLM"],
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": null,
        "gradient_checkpointing": false,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 768,
        "id2label": {"0": "NEGATIVE", "1": "POSITIVE"},
        "label2id": {"NEGATIVE": 0, "POSITIVE": 1},
        "initializer_range": 0.02,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "model_type": "bert",
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "transformers_version": "4.57.1",
        "type_vocab_size": 2,
        "use_cache": true,
        "vocab_size": 30522
    })
}

fn roberta_config() -> Value {
    let mut config = bert_config();
    let object = config.as_object_mut().unwrap();
    object.insert("model_type".into(), "roberta".into());
    object.insert("vocab_size".into(), 50265.into());
    object.insert("pad_token_id".into(), 1.into());
    object.insert("bos_token_id".into(), 0.into());
    object.insert("eos_token_id".into(), 2.into());
    object.insert("max_position_embeddings".into(), 514.into());
    object.insert("type_vocab_size".into(), 1.into());
    config
}

fn distilbert_config() -> Value {
    json!({
        "activation": "gelu", "architectures": ["DistilBertForMaskedLM"],
        "attention_dropout": 0.1, "dim": 768, "dropout": 0.1, "hidden_dim": 3072,
        "initializer_range": 0.02, "max_position_embeddings": 512, "model_type": "distilbert",
        "n_heads": 12, "n_layers": 6, "pad_token_id": 0, "qa_dropout": 0.1,
        "seq_classif_dropout": 0.2, "sinusoidal_pos_embds": false, "tie_weights_": true,
        "vocab_size": 30522
    })
}

/// Every key the reader looks at, and a few it should ignore.
const KEYS: &[&str] = &[
    "model_type",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "classifier_dropout",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
    "initializer_range",
    "num_labels",
    "id2label",
    "label2id",
    "dim",
    "n_layers",
    "n_heads",
    "hidden_dim",
    "activation",
    "dropout",
    "attention_dropout",
    "seq_classif_dropout",
    "sinusoidal_pos_embds",
    "problem_type",
    "bos_token_id",
    "eos_token_id",
    "architectures",
    "",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => proptest::sample::select(KEYS).prop_map(str::to_string), 1 => any::<String>()]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-3i64..1030).prop_map(Value::from),
        proptest::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            0.999_999,
            1.0 - f64::EPSILON,
            1e-300,
            5e-324,
            1e18,
            -1e18,
            9.223_372_036_854_776e18,
            1.8446744073709552e19,
            1e300,
            -1e300,
            f64::MAX,
            f64::MIN,
            12.0,
            768.5,
        ])
        .prop_map(|x| Value::Number(Number::from_f64(x).unwrap())),
        any::<f64>().prop_filter_map("finite", |x| Number::from_f64(x).map(Value::Number)),
    ]
}

fn string() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::sample::select(vec![
            "bert",
            "roberta",
            "xlm-roberta",
            "distilbert",
            "gpt2",
            "",
            "BERT",
            "bert ",
            "gelu",
            "gelu_new",
            "relu",
            "silu",
            "swish",
            "tanh",
            "768",
            "0.1",
            "null",
            "NaN",
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), number(), string(),]
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `id2label` in the shapes configs have been seen with, and some they should not have.
fn id2label() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        Just(json!({"0": "A"})),
        Just(json!({"0": "A", "1": "B", "2": "C"})),
        Just(json!({"5": "A", "-1": "B"})),
        Just(json!({"a": null, "b": [1, 2]})),
        Just(json!(["A", "B"])),
        Just(json!("A,B")),
        prop::collection::vec((any::<String>(), leaf()), 0..40)
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(prop::sample::Index),
    Set(String, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => any::<prop::sample::Index>().prop_map(Edit::Delete),
        4 => (key(), leaf()).prop_map(|(k, v)| Edit::Set(k, v)),
        1 => (key(), json_value()).prop_map(|(k, v)| Edit::Set(k, v)),
        1 => id2label().prop_map(|v| Edit::Set("id2label".into(), v)),
        // A head count that may not divide the hidden size.
        1 => (1i64..50).prop_map(|n| Edit::Set("num_attention_heads".into(), n.into())),
        1 => (1i64..50).prop_map(|n| Edit::Set("n_heads".into(), n.into())),
    ]
}

/// A valid config of one of the supported families, then 1 to 6 edits.
fn mutated_config() -> impl Strategy<Value = Value> {
    (0..3usize, prop::collection::vec(edit(), 1..7)).prop_map(|(family, edits)| {
        let mut config = [bert_config, roberta_config, distilbert_config][family]();
        let object = config.as_object_mut().unwrap();
        for edit in edits {
            match edit {
                Edit::Delete(index) if !object.is_empty() => {
                    let key = object.keys().nth(index.index(object.len())).unwrap().clone();
                    object.remove(&key);
                }
                Edit::Delete(_) => {}
                Edit::Set(key, value) => {
                    object.insert(key, value);
                }
            }
        }
        config
    })
}

/// Bytes: arbitrary, or a valid config's text truncated or with bytes overwritten.
fn config_bytes() -> impl Strategy<Value = Vec<u8>> {
    let text = || {
        (0..3usize).prop_map(|f| {
            [bert_config, roberta_config, distilbert_config][f]().to_string().into_bytes()
        })
    };
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        (text(), any::<prop::sample::Index>())
            .prop_map(|(bytes, at)| { bytes[..at.index(bytes.len() + 1)].to_vec() }),
        (text(), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8))
            .prop_map(|(mut bytes, edits)| {
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                bytes
            }),
    ]
}

/// The property: no panic, errors with messages, and an accepted config a model can use.
fn check(config: &Value) -> Result<(), TestCaseError> {
    match complete(config) {
        Ok(completed) => prop_assert!(completed.is_object()),
        Err(e) => nonempty_message(&e)?,
    }
    match ModelConfig::from_json(config) {
        Ok(model) => {
            common::accepted();
            prop_assert!(model.vocab_size > 0 && model.hidden_size > 0 && model.num_layers > 0);
            prop_assert!(model.num_heads > 0 && model.hidden_size % model.num_heads == 0);
            prop_assert!(model.intermediate_size > 0 && model.max_position_embeddings > 0);
            prop_assert!(model.num_labels > 0);
            for p in [model.hidden_dropout, model.attention_dropout, model.classifier_dropout] {
                prop_assert!((0.0..1.0).contains(&p), "dropout {p}");
            }
            prop_assert!(model.layer_norm_eps > 0.0 && model.layer_norm_eps.is_finite());
            if let Some(pad) = model.pad_token_id {
                prop_assert!((0..model.vocab_size).contains(&pad));
            }
            prop_assert!(model.head_dim() > 0);
        }
        Err(e) => nonempty_message(&e)?,
    }
    Ok(())
}

#[test]
fn valid_configs_read() {
    for config in [bert_config(), roberta_config(), distilbert_config()] {
        let model = ModelConfig::from_json(&config).unwrap();
        assert_eq!((model.hidden_size, model.num_heads, model.num_labels), (768, 12, 2));
    }
}

#[test]
fn arbitrary_json_values() {
    fuzz("config/arbitrary_json", json_value(), |value| check(&value));
}

#[test]
fn arbitrary_objects_with_a_model_type() {
    let strategy = (string(), prop::collection::vec((key(), json_value()), 0..12));
    fuzz("config/arbitrary_objects", strategy, |(model_type, pairs)| {
        let mut object: Map<String, Value> = pairs.into_iter().collect();
        object.insert("model_type".into(), model_type);
        check(&Value::Object(object))
    });
}

#[test]
fn mutated_valid_configs() {
    fuzz("config/mutated_valid", mutated_config(), |value| check(&value));
}

#[test]
fn bytes_through_serde_json() {
    fuzz("config/bytes", config_bytes(), |bytes| {
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            check(&value)?;
        }
        Ok(())
    });
}
