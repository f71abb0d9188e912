//! Reading the small JSON files that describe models and tokenizers (`config.json`,
//! `tokenizer_config.json`, `special_tokens_map.json`), with errors that name the file.

use crate::error::{Error, Result};
use std::path::Path;

/// Parses the JSON file at `path`.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::value(format!("{}: not valid JSON: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrotune-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn reads_a_json_object() {
        let path = temp_file("ok.json", r#"{"model_type": "bert", "hidden_size": 384}"#);
        let value = read_json(&path).unwrap();
        assert_eq!(value["model_type"], "bert");
        assert_eq!(value["hidden_size"], 384);
    }

    #[test]
    fn malformed_json_names_the_file_and_the_position() {
        let path = temp_file("bad.json", "{\"model_type\": \n  bert}");
        let err = read_json(&path).unwrap_err();
        assert!(matches!(err, Error::Value(_)));
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{}: not valid JSON", path.display())), "{msg}");
        assert!(msg.contains("line 2 column 3"), "{msg}");
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = read_json(Path::new("/no/such/dir/config.json")).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)));
    }
}
