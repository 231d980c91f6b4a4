//! One error type for the whole engine. Every load or run path returns `Result<T>`; nothing on those
//! paths panics. The wasm API turns an `Error` into `{type, message}` in one place (`wasm.rs`).

use thiserror::Error;

pub type Result<T> = std::result::Result<T, Error>;

/// Reserves room for `additional` more elements in `v`, or fails with `OutOfMemory` for `what` (so a
/// size too large for this machine or for wasm's 4 GiB is an error, not an abort).
pub fn try_reserve<T>(v: &mut Vec<T>, additional: usize, what: impl FnOnce() -> String) -> Result<()> {
    v.try_reserve_exact(additional).map_err(|_| Error::OutOfMemory {
        what: what(),
        bytes: (additional as u64).saturating_mul(std::mem::size_of::<T>() as u64),
    })
}

#[derive(Debug, Error)]
pub enum Error {
    // ---- GGUF container -------------------------------------------------------------------------
    #[error("not a GGUF file (magic bytes {found:02x?}, expected \"GGUF\")")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {0} (supported: 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("truncated GGUF: {context} needs {needed} bytes at offset {offset}, but the file has {available}")]
    Truncated { context: String, offset: u64, needed: u64, available: u64 },
    #[error("GGUF limit exceeded: {what} is {value}, the limit is {limit}")]
    LimitExceeded { what: String, value: u64, limit: u64 },
    #[error("GGUF metadata value of unknown type {type_id} for key {key:?}")]
    UnknownValueType { key: String, type_id: u32 },
    #[error("GGUF string is not valid UTF-8 ({context})")]
    InvalidUtf8 { context: String },
    #[error("duplicate GGUF {what} {name:?}")]
    Duplicate { what: &'static str, name: String },
    #[error("tensor {name:?} has data at offset {offset} that is not aligned to {alignment}")]
    MisalignedTensor { name: String, offset: u64, alignment: u64 },
    #[error("tensor {name:?} overlaps the tensor before it or lies outside the data section")]
    TensorOutOfBounds { name: String },

    // ---- model metadata and tensors ------------------------------------------------------------
    #[error("unsupported architecture {0:?} (supported: {list})", list = crate::model::supported_architectures())]
    UnsupportedArchitecture(String),
    #[error("missing metadata key {0:?}")]
    MissingMetadata(String),
    #[error("metadata key {key:?} has the wrong type or value: {reason}")]
    BadMetadata { key: String, reason: String },
    #[error("missing tensor {0:?}")]
    MissingTensor(String),
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    TensorShape { name: String, found: Vec<u64>, expected: Vec<u64> },
    #[error("tensor {name:?} has unsupported type {type_name}")]
    UnsupportedTensorType { name: String, type_name: String },
    #[error("invalid model configuration: {0}")]
    BadConfig(String),

    // ---- tokenizer, template, generation -------------------------------------------------------
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("chat template error: {0}")]
    Template(String),
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadToken { id: u32, vocab: usize },
    #[error("the context is full: {needed} tokens needed, the context holds {capacity}")]
    ContextFull { needed: usize, capacity: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An allocation the engine asked for with `try_reserve` failed: `bytes` for `what` (a context,
    /// a tensor, a metadata array). Not damage: the same file may load with a smaller context or
    /// more memory, so callers must not discard it.
    #[error("out of memory: {what} needs {bytes} bytes")]
    OutOfMemory { what: String, bytes: u64 },
    #[error("cancelled")]
    Cancelled,

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A stable machine-readable category, used as `type` by the JS API and by `--json` errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::BadMagic { .. }
            | Error::UnsupportedVersion(_)
            | Error::Truncated { .. }
            | Error::LimitExceeded { .. }
            | Error::UnknownValueType { .. }
            | Error::InvalidUtf8 { .. }
            | Error::Duplicate { .. }
            | Error::MisalignedTensor { .. }
            | Error::TensorOutOfBounds { .. }
            | Error::UnsupportedArchitecture(_)
            | Error::MissingMetadata(_)
            | Error::BadMetadata { .. }
            | Error::MissingTensor(_)
            | Error::TensorShape { .. }
            | Error::UnsupportedTensorType { .. }
            | Error::BadConfig(_) => "load_error",
            Error::Tokenizer(_) => "tokenizer_error",
            Error::Template(_) => "template_error",
            Error::BadToken { .. } | Error::InvalidArgument(_) => "invalid_argument",
            Error::ContextFull { .. } => "context_full",
            Error::OutOfMemory { .. } => "out_of_memory",
            Error::Cancelled => "aborted",
            Error::Io(_) => "io_error",
        }
    }
}
