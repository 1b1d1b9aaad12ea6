//! Encoding helpers and error conversion for values this crate stores.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use serde::{de::DeserializeOwned, Serialize};

use crate::types::StorageError;

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    telex_types::wire::encode(v)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], subject: ErrorSubject<u64>) -> Result<T, StorageError> {
    telex_types::wire::decode(bytes).map_err(|e| io_err(subject, ErrorVerb::Read, e))
}

pub(crate) fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl ToString) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

pub(crate) fn read_err(e: impl ToString) -> StorageError {
    io_err(ErrorSubject::Store, ErrorVerb::Read, e)
}

pub(crate) fn write_err(e: impl ToString) -> StorageError {
    io_err(ErrorSubject::Store, ErrorVerb::Write, e)
}
