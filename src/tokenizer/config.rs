//! What a tokenizer folder says beyond the vocabulary: `tokenizer_config.json`,
//! `special_tokens_map.json` and `config.json`, read with the rules of transformers'
//! `PreTrainedTokenizerBase._from_pretrained` and `PreTrainedTokenizerBase.__init__`.

use crate::error::{Error, Result};
use crate::files::read_json;
use serde_json::{Map, Value};
use std::path::Path;
use tokenizers::AddedToken;

/// The tokenizer classes whose pipeline ferrotune builds as transformers' class does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `BertTokenizer` (and its aliases): WordPiece, BERT normalizer, `[CLS] A [SEP] B [SEP]`.
    Bert,
    /// `DistilBertTokenizer`: BERT's pipeline without `token_type_ids` in the model inputs.
    DistilBert,
    /// `RobertaTokenizer` (and `LongformerTokenizer`): byte-level BPE, `<s> A </s></s> B </s>`.
    Roberta,
    /// `XLMRobertaTokenizer`: SentencePiece Unigram with the fairseq ids, `<s> A </s></s> B </s>`.
    XlmRoberta,
    /// `DebertaV2Tokenizer`: SentencePiece Unigram, `[CLS] A [SEP] B [SEP]` with token types.
    DebertaV2,
    /// Any other class: `tokenizer.json` as saved (transformers' `TokenizersBackend`).
    Generic,
}

impl Family {
    /// The family of a `tokenizer_class` name (`models/auto/tokenization_auto.py` resolves these
    /// names, with or without "Fast", to the same classes).
    fn from_class(name: &str) -> Family {
        match name.strip_suffix("Fast").unwrap_or(name) {
            "BertTokenizer" | "ElectraTokenizer" => Family::Bert,
            "DistilBertTokenizer" => Family::DistilBert,
            "RobertaTokenizer" | "LongformerTokenizer" => Family::Roberta,
            "XLMRobertaTokenizer" => Family::XlmRoberta,
            "DebertaV2Tokenizer" => Family::DebertaV2,
            _ => Family::Generic,
        }
    }

    /// The family of a `config.json` `model_type` (`TOKENIZER_MAPPING_NAMES`).
    fn from_model_type(model_type: &str) -> Family {
        match model_type {
            "bert" | "electra" | "distilbert" => Family::Bert,
            "roberta" | "longformer" => Family::Roberta,
            "xlm-roberta" => Family::XlmRoberta,
            "deberta-v2" => Family::DebertaV2,
            _ => Family::Generic,
        }
    }

    /// The class name written back by `save_pretrained`.
    pub fn class_name(self) -> Option<&'static str> {
        match self {
            Family::Bert => Some("BertTokenizer"),
            Family::DistilBert => Some("DistilBertTokenizer"),
            Family::Roberta => Some("RobertaTokenizer"),
            Family::XlmRoberta => Some("XLMRobertaTokenizer"),
            Family::DebertaV2 => Some("DebertaV2Tokenizer"),
            Family::Generic => None,
        }
    }

    pub fn is_bert(self) -> bool {
        matches!(self, Family::Bert | Family::DistilBert)
    }

    /// The class defaults of the special tokens (each class's `__init__`); `TokenizersBackend`
    /// loaded from a file has none.
    fn default_special_tokens(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Family::Bert | Family::DistilBert => &[
                ("unk_token", "[UNK]"),
                ("sep_token", "[SEP]"),
                ("pad_token", "[PAD]"),
                ("cls_token", "[CLS]"),
                ("mask_token", "[MASK]"),
            ],
            Family::Roberta | Family::XlmRoberta => &[
                ("bos_token", "<s>"),
                ("eos_token", "</s>"),
                ("unk_token", "<unk>"),
                ("sep_token", "</s>"),
                ("pad_token", "<pad>"),
                ("cls_token", "<s>"),
                ("mask_token", "<mask>"),
            ],
            Family::DebertaV2 => &[
                ("bos_token", "[CLS]"),
                ("eos_token", "[SEP]"),
                ("unk_token", "[UNK]"),
                ("sep_token", "[SEP]"),
                ("pad_token", "[PAD]"),
                ("cls_token", "[CLS]"),
                ("mask_token", "[MASK]"),
            ],
            Family::Generic => &[],
        }
    }

    /// The class attribute `model_input_names`.
    fn model_input_names(self) -> &'static [&'static str] {
        match self {
            Family::Bert => &["input_ids", "token_type_ids", "attention_mask"],
            Family::DebertaV2 => &["input_ids", "attention_mask", "token_type_ids"],
            _ => &["input_ids", "attention_mask"],
        }
    }
}

/// `PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES`, in its order.
pub const SPECIAL_TOKEN_NAMES: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

pub use crate::rows::Side;

/// Everything but the vocabulary, as read from the folder.
#[derive(Debug, Clone)]
pub struct Settings {
    pub family: Family,
    /// `tokenizer_config.json` as read (an empty map when absent); `save_pretrained` rewrites it.
    pub raw: Map<String, Value>,
    /// Named special tokens, in `SPECIAL_TOKEN_NAMES` order, only those that are set.
    pub special_tokens: Vec<(&'static str, AddedToken)>,
    /// `extra_special_tokens` (formerly `additional_special_tokens`).
    pub extra_special_tokens: Vec<AddedToken>,
    /// Whether the configuration names them (else a SentencePiece model may give them).
    pub names_extra_special_tokens: bool,
    /// The config's `added_tokens_decoder`, in id order; `None` when the config has none.
    pub added_tokens: Option<Vec<AddedToken>>,
    /// `None` when the model has no maximum (transformers' `VERY_LARGE_INTEGER`).
    pub model_max_length: Option<usize>,
    pub padding_side: Side,
    pub truncation_side: Side,
    pub model_input_names: Vec<String>,
    pub clean_up_tokenization_spaces: bool,
}

impl Settings {
    /// Reads the configuration files of `dir` (all optional) for a tokenizer whose family falls
    /// back to `by_files` when neither `tokenizer_config.json` nor `config.json` names one.
    /// `overrides` (the keyword arguments of `from_pretrained`) win over every file, as
    /// transformers' `init_kwargs.update(kwargs)`.
    pub fn read(dir: &Path, by_files: Family, overrides: &Map<String, Value>) -> Result<Settings> {
        let mut raw = read_object(&dir.join("tokenizer_config.json"))?.unwrap_or_default();
        raw.extend(overrides.clone());
        // AutoTokenizer.from_pretrained: the config's tokenizer_class first, then config.json.
        let family = match raw.get("tokenizer_class").and_then(Value::as_str) {
            Some(class) => Family::from_class(class),
            None => match read_object(&dir.join("config.json"))? {
                Some(config) => match config.get("model_type").and_then(Value::as_str) {
                    Some(model_type) => Family::from_model_type(model_type),
                    None => by_files,
                },
                None => by_files,
            },
        };
        let path = dir.join("tokenizer_config.json");
        let mut token_values: Map<String, Value> = raw.clone();
        // _from_pretrained: special_tokens_map.json is only read when the config has no
        // added_tokens_decoder, and then its values win over the config's.
        let added_tokens = match raw.get("added_tokens_decoder") {
            Some(decoder) => Some(added_tokens_decoder(decoder, &path)?),
            None => {
                let map_path = dir.join("special_tokens_map.json");
                if let Some(map) = read_object(&map_path)? {
                    token_values.extend(map);
                    token_values.extend(overrides.clone());
                }
                None
            }
        };

        let mut special_tokens = Vec::new();
        for name in SPECIAL_TOKEN_NAMES {
            let token = match token_values.get(name) {
                Some(Value::Null) => None,
                Some(value) => Some(added_token(value, true, &path, name)?),
                None => family
                    .default_special_tokens()
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, content)| AddedToken::from(*content, true)),
            };
            if let Some(token) = token {
                special_tokens.push((name, token));
            }
        }
        let extra = token_values
            .get("extra_special_tokens")
            .or_else(|| token_values.get("additional_special_tokens"));
        let extra_special_tokens = match extra {
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| added_token(item, true, &path, "extra_special_tokens"))
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };

        let side = |key: &str, what: &str| match raw.get(key).and_then(Value::as_str) {
            Some(value) => Side::parse(value, what),
            None => Ok(Side::Right),
        };
        let model_input_names = match raw.get("model_input_names") {
            Some(Value::Array(names)) => {
                names.iter().filter_map(Value::as_str).map(str::to_string).collect()
            }
            _ => family.model_input_names().iter().map(|name| name.to_string()).collect(),
        };
        Ok(Settings {
            family,
            special_tokens,
            names_extra_special_tokens: extra.is_some(),
            extra_special_tokens,
            added_tokens,
            model_max_length: model_max_length(raw.get("model_max_length").or(raw.get("max_len"))),
            padding_side: side("padding_side", "Padding")?,
            truncation_side: side("truncation_side", "Truncation")?,
            model_input_names,
            clean_up_tokenization_spaces: raw
                .get("clean_up_tokenization_spaces")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            raw,
        })
    }

    /// A boolean of the config, or the class default.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        self.raw.get(key).and_then(Value::as_bool).unwrap_or(default)
    }

    /// The named special token `name` ("pad_token", ...), if set.
    pub fn special_token(&self, name: &str) -> Option<&str> {
        self.special_tokens
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, token)| token.content.as_str())
    }
}

/// The JSON object in `path`, or `None` when the file does not exist.
pub(crate) fn read_object(path: &Path) -> Result<Option<Map<String, Value>>> {
    if !path.is_file() {
        return Ok(None);
    }
    match read_json(path)? {
        Value::Object(map) => Ok(Some(map)),
        other => Err(Error::value(format!(
            "{}: expected a JSON object, got {}",
            path.display(),
            json_kind(&other)
        ))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A `model_max_length` (as the user sets it): values above transformers' `LARGE_INTEGER`
/// (1e20), such as the `VERY_LARGE_INTEGER` (1e30) that stands for "no limit", mean no limit.
pub fn max_length_limit(value: f64) -> Result<Option<usize>> {
    const LARGE_INTEGER: f64 = 1e20;
    if value.is_nan() || value < 0.0 || (value.is_finite() && value.fract() != 0.0) {
        return Err(Error::value(format!(
            "model_max_length must be a whole number of tokens, got {value}"
        )));
    }
    // `as` saturates: lengths between usize::MAX and 1e20 are no limit in practice.
    Ok((value <= LARGE_INTEGER).then_some(value as usize))
}

/// `model_max_length` as the config files write it; what is not a length is no limit.
fn model_max_length(value: Option<&Value>) -> Option<usize> {
    let number = value?.as_number()?;
    match number.as_u64() {
        Some(n) => usize::try_from(n).ok(),
        None => number.as_f64().and_then(|f| max_length_limit(f).ok().flatten()),
    }
}

/// A token as `tokenizer_config.json` and `special_tokens_map.json` write it: a string, or an
/// `AddedToken` object (`{"content": ..., "lstrip": ..., ...}`). Named special tokens are
/// special whatever the object says (`TokenizersBackend.__init__`).
pub(crate) fn added_token(
    value: &Value,
    force_special: bool,
    path: &Path,
    key: &str,
) -> Result<AddedToken> {
    match value {
        Value::String(content) => Ok(AddedToken::from(content.as_str(), true)),
        Value::Object(fields) => {
            let content = fields.get("content").and_then(Value::as_str).ok_or_else(|| {
                Error::value(format!("{}: {key} has no \"content\" string", path.display()))
            })?;
            let flag = |name: &str| fields.get(name).and_then(Value::as_bool);
            let special = force_special || flag("special").unwrap_or(false);
            Ok(AddedToken::from(content, special)
                .single_word(flag("single_word").unwrap_or(false))
                .lstrip(flag("lstrip").unwrap_or(false))
                .rstrip(flag("rstrip").unwrap_or(false))
                // tokenizers' AddedToken: `normalized` defaults to "not special".
                .normalized(flag("normalized").unwrap_or(!special)))
        }
        other => Err(Error::value(format!(
            "{}: {key} must be a string or an object, got {}",
            path.display(),
            json_kind(other)
        ))),
    }
}

/// The tokens of an `added_tokens_decoder` object (`{"id": {token}}`), in id order.
fn added_tokens_decoder(value: &Value, path: &Path) -> Result<Vec<AddedToken>> {
    let Value::Object(entries) = value else {
        return Err(Error::value(format!(
            "{}: added_tokens_decoder must be an object",
            path.display()
        )));
    };
    let mut tokens = entries
        .iter()
        .map(|(id, token)| {
            let id: u64 = id.parse().map_err(|_| {
                Error::value(format!(
                    "{}: added_tokens_decoder key {id:?} is not a token id",
                    path.display()
                ))
            })?;
            Ok((id, added_token(token, false, path, "added_tokens_decoder")?))
        })
        .collect::<Result<Vec<_>>>()?;
    tokens.sort_by_key(|(id, _)| *id);
    Ok(tokens.into_iter().map(|(_, token)| token).collect())
}

/// The `added_tokens` list of a `tokenizer.json`, in id order (the legacy source of added tokens
/// when the config has no `added_tokens_decoder`).
pub(crate) fn tokenizer_json_added_tokens(json: &Value, path: &Path) -> Result<Vec<AddedToken>> {
    let mut tokens = match json.get("added_tokens") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                let id = item.get("id").and_then(Value::as_u64).unwrap_or(u64::MAX);
                Ok((id, added_token(item, false, path, "added_tokens")?))
            })
            .collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    };
    tokens.sort_by_key(|(id, _)| *id);
    Ok(tokens.into_iter().map(|(_, token)| token).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn folder(files: &[(&str, Value)]) -> std::path::PathBuf {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ferrotune-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, value) in files {
            std::fs::write(dir.join(name), value.to_string()).unwrap();
        }
        dir
    }

    fn contents(settings: &Settings) -> Vec<(&str, &str)> {
        settings.special_tokens.iter().map(|(k, t)| (*k, t.content.as_str())).collect()
    }

    #[test]
    fn the_class_comes_from_the_config_then_the_model_type_then_the_files() {
        let dir = folder(&[(
            "tokenizer_config.json",
            json!({"tokenizer_class": "RobertaTokenizerFast"}),
        )]);
        assert_eq!(
            Settings::read(&dir, Family::Bert, &Map::new()).unwrap().family,
            Family::Roberta
        );
        let dir = folder(&[("config.json", json!({"model_type": "distilbert"}))]);
        assert_eq!(
            Settings::read(&dir, Family::Generic, &Map::new()).unwrap().family,
            Family::Bert
        );
        let dir = folder(&[]);
        assert_eq!(
            Settings::read(&dir, Family::Roberta, &Map::new()).unwrap().family,
            Family::Roberta
        );
    }

    #[test]
    fn special_tokens_map_wins_unless_the_config_has_added_tokens_decoder() {
        let config =
            json!({"tokenizer_class": "BertTokenizer", "pad_token": "[P]", "cls_token": null});
        let map = json!({"pad_token": {"content": "<pad>", "lstrip": true}, "mask_token": "[M]"});
        let dir =
            folder(&[("tokenizer_config.json", config), ("special_tokens_map.json", map.clone())]);
        let settings = Settings::read(&dir, Family::Generic, &Map::new()).unwrap();
        assert_eq!(
            contents(&settings),
            [
                ("unk_token", "[UNK]"),
                ("sep_token", "[SEP]"),
                ("pad_token", "<pad>"),
                ("mask_token", "[M]")
            ]
        );
        let pad = &settings.special_tokens[2].1;
        assert!(pad.special && pad.lstrip && !pad.normalized);
        assert!(settings.added_tokens.is_none());

        let config = json!({"tokenizer_class": "BertTokenizer", "pad_token": "[P]",
            "added_tokens_decoder": {"5": {"content": "b", "special": false},
                                     "1": {"content": "a", "special": true}}});
        let dir = folder(&[("tokenizer_config.json", config), ("special_tokens_map.json", map)]);
        let settings = Settings::read(&dir, Family::Generic, &Map::new()).unwrap();
        assert_eq!(settings.special_token("pad_token"), Some("[P]"));
        let added = settings.added_tokens.unwrap();
        assert_eq!(added.iter().map(|t| t.content.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(added[0].special && !added[1].special && added[1].normalized);
    }

    #[test]
    fn model_max_length_beyond_large_integer_is_no_limit() {
        assert_eq!(model_max_length(Some(&json!(512))), Some(512));
        assert_eq!(model_max_length(Some(&json!(512.0))), Some(512));
        assert_eq!(model_max_length(Some(&json!(1e30))), None);
        assert_eq!(model_max_length(None), None);
        assert_eq!(max_length_limit(1e20).unwrap(), Some(usize::MAX));
        assert_eq!(max_length_limit(1e30).unwrap(), None);
        assert_eq!(max_length_limit(f64::INFINITY).unwrap(), None);
        assert!(max_length_limit(-1.0).unwrap_err().to_string().contains("-1"));
        assert!(max_length_limit(2.5).is_err());
    }

    #[test]
    fn a_bad_side_names_the_value() {
        let dir = folder(&[("tokenizer_config.json", json!({"padding_side": "up"}))]);
        let err = Settings::read(&dir, Family::Generic, &Map::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Padding side should be selected between 'right' and 'left', current value: up"
        );
    }
}
