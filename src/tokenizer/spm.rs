//! The parts of a SentencePiece model file (`spm.model`, `sentencepiece.bpe.model`) that
//! transformers' `SentencePieceExtractor.extract` reads: the pieces with their scores and
//! types, the unknown piece's id and the precompiled normalization map. The file is a protobuf
//! `ModelProto` (sentencepiece's `sentencepiece_model.proto`); this reads its wire format
//! directly, so neither the sentencepiece nor the protobuf package is needed.

use crate::error::{Error, Result};
use std::path::Path;

/// `SentencePiece.Type`: the kinds of pieces transformers treats differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PieceKind {
    Normal,
    Unknown,
    /// `<s>`, `</s>`...: special tokens.
    Control,
    /// Pieces the user forced into the vocabulary: added tokens, not special.
    UserDefined,
    Other,
}

impl PieceKind {
    fn from_wire(value: u64) -> PieceKind {
        match value {
            1 => PieceKind::Normal,
            2 => PieceKind::Unknown,
            3 => PieceKind::Control,
            4 => PieceKind::UserDefined,
            _ => PieceKind::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceKind,
}

/// What transformers takes from a SentencePiece model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpmModel {
    pub pieces: Vec<Piece>,
    /// `trainer_spec.unk_id`.
    pub unk_id: i32,
    /// `normalizer_spec.precompiled_charsmap`; empty when the model has none.
    pub precompiled_charsmap: Vec<u8>,
}

impl SpmModel {
    pub(crate) fn read(path: &Path) -> Result<SpmModel> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        SpmModel::parse(&bytes).map_err(|why| {
            Error::value(format!("{}: not a SentencePiece model file: {why}", path.display()))
        })
    }

    fn parse(bytes: &[u8]) -> std::result::Result<SpmModel, String> {
        let mut model =
            SpmModel { pieces: Vec::new(), unk_id: 0, precompiled_charsmap: Vec::new() };
        for field in Fields(Reader { bytes, at: 0 }) {
            match field? {
                (1, Value::Bytes(piece)) => model.pieces.push(parse_piece(piece)?),
                (2, Value::Bytes(trainer_spec)) => {
                    for field in Fields(Reader { bytes: trainer_spec, at: 0 }) {
                        if let (40, Value::Varint(id)) = field? {
                            // int32 on the wire: negative values are 64-bit two's complement.
                            model.unk_id = id as i64 as i32;
                        }
                    }
                }
                (3, Value::Bytes(normalizer_spec)) => {
                    for field in Fields(Reader { bytes: normalizer_spec, at: 0 }) {
                        if let (2, Value::Bytes(map)) = field? {
                            model.precompiled_charsmap = map.to_vec();
                        }
                    }
                }
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            return Err("it has no pieces".into());
        }
        Ok(model)
    }
}

fn parse_piece(bytes: &[u8]) -> std::result::Result<Piece, String> {
    let mut piece = Piece { piece: String::new(), score: 0.0, kind: PieceKind::Normal };
    for field in Fields(Reader { bytes, at: 0 }) {
        match field? {
            (1, Value::Bytes(text)) => {
                piece.piece = String::from_utf8(text.to_vec())
                    .map_err(|_| format!("the piece {text:?} is not UTF-8"))?;
            }
            (2, Value::Fixed32(bits)) => piece.score = f32::from_bits(bits),
            (3, Value::Varint(kind)) => piece.kind = PieceKind::from_wire(kind),
            _ => {}
        }
    }
    Ok(piece)
}

/// One protobuf field value, by wire type.
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or("it ends inside a number")?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("a number at byte {} is longer than 10 bytes", self.at))
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end =
            self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or_else(|| {
                format!("a field of {n} bytes at byte {} runs past the end", self.at)
            })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn field(&mut self) -> std::result::Result<(u64, Value<'a>), String> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(usize::try_from(n).map_err(|_| "a field is too long")?)?)
            }
            5 => {
                let bits = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([bits[0], bits[1], bits[2], bits[3]]))
            }
            wire => return Err(format!("unknown wire type {wire} at byte {}", self.at)),
        };
        Ok((key >> 3, value))
    }
}

/// The fields of a message, in order; stops at the first malformed one.
struct Fields<'a>(Reader<'a>);

impl<'a> Iterator for Fields<'a> {
    type Item = std::result::Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.at >= self.0.bytes.len() {
            return None;
        }
        let field = self.0.field();
        if field.is_err() {
            self.0.at = self.0.bytes.len();
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut value: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(number: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    fn piece(text: &str, score: f32, kind: u64) -> Vec<u8> {
        let mut out = Vec::new();
        bytes_field(1, text.as_bytes(), &mut out);
        varint(2 << 3 | 5, &mut out);
        out.extend_from_slice(&score.to_le_bytes());
        varint(3 << 3, &mut out);
        varint(kind, &mut out);
        out
    }

    fn model() -> Vec<u8> {
        let mut out = Vec::new();
        bytes_field(1, &piece("<unk>", 0.0, 2), &mut out);
        bytes_field(1, &piece("<s>", 0.0, 3), &mut out);
        bytes_field(1, &piece("\u{2581}a", -1.5, 1), &mut out);
        let mut trainer = Vec::new();
        varint(40 << 3, &mut trainer);
        varint(-1i64 as u64, &mut trainer); // unk_id -1: ten bytes on the wire
        varint(35 << 3, &mut trainer); // byte_fallback, skipped
        varint(1, &mut trainer);
        bytes_field(2, &trainer, &mut out);
        let mut normalizer = Vec::new();
        bytes_field(1, b"nmt_nfkc", &mut normalizer);
        bytes_field(2, &[1, 2, 3], &mut normalizer);
        bytes_field(3, &normalizer, &mut out);
        out
    }

    #[test]
    fn reads_pieces_scores_kinds_unk_id_and_charsmap() {
        let model = SpmModel::parse(&model()).unwrap();
        let pieces: Vec<_> = model.pieces.iter().map(|p| (p.piece.as_str(), p.score)).collect();
        assert_eq!(pieces, [("<unk>", 0.0), ("<s>", 0.0), ("\u{2581}a", -1.5)]);
        let kinds: Vec<_> = model.pieces.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, [PieceKind::Unknown, PieceKind::Control, PieceKind::Normal]);
        assert_eq!(model.unk_id, -1);
        assert_eq!(model.precompiled_charsmap, [1, 2, 3]);
    }

    #[test]
    fn truncated_and_empty_files_are_errors_that_say_why() {
        let bytes = model();
        for cut in [1, 5, bytes.len() - 2] {
            assert!(SpmModel::parse(&bytes[..cut]).unwrap_err().contains("end"), "cut at {cut}");
        }
        assert_eq!(SpmModel::parse(&[]).unwrap_err(), "it has no pieces");
        assert!(SpmModel::parse(&[0x0f]).unwrap_err().contains("wire type 7"));
    }
}
