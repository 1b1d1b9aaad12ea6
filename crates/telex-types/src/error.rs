//! Error codes with stable names; mapped to gRPC status and XMPP conditions at the edges only.

use serde::{Deserialize, Serialize};

/// A stable error code. Callers branch on it; `retryable()` says whether the same request may
/// succeed later unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    Unauthenticated,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    /// The owning group has no reachable leader or quorum right now.
    Unavailable,
    Internal,
    /// The tenant's policy refuses it (the message names the rule's description): a
    /// permission denial an admin decided, shown as XMPP `policy-violation`.
    PolicyDenied,
}

impl ErrorCode {
    /// Every code, in a fixed order (`parse` and the pinned encodings rely on it: a new code
    /// goes here too).
    pub const ALL: [ErrorCode; 10] = {
        use ErrorCode::*;
        [
            InvalidArgument,
            NotFound,
            AlreadyExists,
            Unauthenticated,
            PermissionDenied,
            ResourceExhausted,
            FailedPrecondition,
            Unavailable,
            Internal,
            PolicyDenied,
        ]
    };

    pub fn retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::ResourceExhausted)
    }

    /// The code named by `as_str`.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::PolicyDenied => "policy_denied",
        }
    }
}

/// The error every Telex service returns: a code and a message naming the problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct TelexError {
    pub code: ErrorCode,
    pub message: String,
}

impl TelexError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        TelexError { code, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AlreadyExists, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    /// The one answer for every failed login, so that it never reveals whether a user exists.
    pub fn bad_credentials() -> Self {
        Self::new(ErrorCode::Unauthenticated, "invalid username or password")
    }
}
