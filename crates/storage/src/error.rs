use yunwei_core::Msg;

/// What storage can answer besides success. Database failures keep their cause for the log, while
/// people see only a generic message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("conflict: {0}")]
    Conflict(Msg),
    #[error("invalid: {field}: {msg}")]
    Invalid { field: &'static str, msg: Msg },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("schema: {0}")]
    Schema(String),
    #[error("crypto: {0}")]
    Crypto(&'static str),
    /// A contract file with problems, each with its position in the file.
    #[error("contract file: {} problem(s)", .0.len())]
    ContractFile(Vec<yunwei_core::contract::Diagnostic>),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    pub fn invalid(field: &'static str, msg: Msg) -> Self {
        StoreError::Invalid { field, msg }
    }

    /// Maps a unique-constraint violation to a conflict with the given message.
    pub fn unique_as(self, msg: Msg) -> Self {
        match &self {
            StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation() => StoreError::Conflict(msg),
            _ => self,
        }
    }
}
