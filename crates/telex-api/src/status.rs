//! The one mapping from Telex error codes to gRPC status codes.

use telex_types::{ErrorCode, TelexError};
use tonic::{Code, Status};

pub fn to_status(e: TelexError) -> Status {
    let code = match e.code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Internal => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %e.message, "internal error");
    }
    Status::new(code, e.message)
}
