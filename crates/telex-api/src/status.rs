//! The one mapping between Telex error codes (and session cut-offs) and gRPC status codes.

use telex_session::CutOff;
use telex_types::{ErrorCode, TelexError};
use tonic::{Code, Status};

fn code_of(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Internal => Code::Internal,
        ErrorCode::PolicyDenied => Code::PermissionDenied,
    }
}

pub fn to_status(e: TelexError) -> Status {
    let code = code_of(e.code);
    if code == Code::Internal {
        tracing::error!(error = %e.message, "internal error");
    }
    let mut status = Status::new(code, e.message);
    // The gRPC code is coarser than Telex's (a policy refusal is a permission denial): the
    // exact one travels beside it, for the node on the other end.
    if let Ok(v) = e.code.as_str().parse() {
        status.metadata_mut().insert(CODE_HEADER, v);
    }
    status
}

const CODE_HEADER: &str = "telex-code";

/// A status from another node (or a transport failure) as a Telex error. Codes Telex does not
/// use (a broken connection, a cancelled call) mean the other node could not be reached.
pub fn to_error(s: &Status) -> TelexError {
    let exact = s.metadata().get(CODE_HEADER).and_then(|v| v.to_str().ok()).and_then(ErrorCode::parse);
    if let Some(code) = exact {
        return TelexError::new(code, s.message().to_string());
    }
    let code = match s.code() {
        Code::InvalidArgument | Code::OutOfRange => ErrorCode::InvalidArgument,
        Code::NotFound => ErrorCode::NotFound,
        Code::AlreadyExists => ErrorCode::AlreadyExists,
        Code::Unauthenticated => ErrorCode::Unauthenticated,
        Code::PermissionDenied => ErrorCode::PermissionDenied,
        Code::ResourceExhausted => ErrorCode::ResourceExhausted,
        Code::FailedPrecondition => ErrorCode::FailedPrecondition,
        Code::Internal | Code::DataLoss | Code::Unimplemented => ErrorCode::Internal,
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted | Code::DeadlineExceeded | Code::Ok => {
            ErrorCode::Unavailable
        }
    };
    TelexError::new(code, s.message().to_string())
}

/// How a session the server ended looks to a native client: the cut-off's code and reason.
pub fn cutoff_status(why: &CutOff) -> Status {
    Status::new(code_of(why.code()), why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_status() {
        for c in ErrorCode::ALL {
            assert_eq!(to_error(&to_status(TelexError::new(c, "m"))).code, c);
        }
        assert_eq!(to_error(&Status::cancelled("gone")).code, ErrorCode::Unavailable);
        assert_eq!(cutoff_status(&CutOff::Moved).code(), Code::Unavailable);
        assert_eq!(cutoff_status(&CutOff::Replaced).code(), Code::AlreadyExists);
        assert!(cutoff_status(&CutOff::Kicked).message().contains("administrator"));
    }
}
