//! Turning answers and errors into what the user sees.

use serde::Serialize;
use tonic::transport::Channel;

/// One line naming what went wrong, with the gRPC code in words.
pub fn status_line(s: tonic::Status) -> String {
    // The server names refusals of the tenant's policy exactly (gRPC has no code of its own).
    let policy = s.metadata().get("telex-code").is_some_and(|v| v.to_str().is_ok_and(|c| c == "policy_denied"));
    let code = match s.code() {
        tonic::Code::PermissionDenied if policy => "policy denied",
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::NotFound => "not found",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::ResourceExhausted => "resource exhausted",
        tonic::Code::Unavailable => "unavailable",
        _ => "error",
    };
    let msg = s.message().replace('\n', " ");
    format!("{code}: {msg}")
}

pub async fn connect(addr: &str) -> Result<Channel, String> {
    let url = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let endpoint = Channel::from_shared(url).map_err(|e| format!("bad address {addr:?}: {e}"))?;
    endpoint
        .connect_timeout(std::time::Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr} (is telexd running there?): {e}"))
}

/// Adds the admin token to every call on the admin API.
#[derive(Clone)]
pub struct AdminToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for AdminToken {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

pub type AdminChannel = tonic::service::interceptor::InterceptedService<Channel, AdminToken>;

/// Where `telexd` run in this directory wrote its first admin token.
const LOCAL_TOKEN: &str = "telex-data/admin-token";

/// A channel to the admin API that carries the admin token: `--admin-token`, or
/// `TELEX_ADMIN_TOKEN`, or the token a node started in this directory wrote.
pub async fn admin_channel(addr: &str, token: Option<&str>) -> Result<AdminChannel, String> {
    let token = match token {
        Some(t) => Some(t.trim().to_string()),
        None => std::fs::read_to_string(LOCAL_TOKEN).ok().map(|t| t.trim().to_string()),
    };
    let header = match token.filter(|t| !t.is_empty()) {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| "the admin token holds characters a header cannot carry".to_string())?,
        ),
        None => None,
    };
    Ok(tonic::service::interceptor::InterceptedService::new(connect(addr).await?, AdminToken(header)))
}

/// Prints `value` as JSON, or `text` for people.
pub fn emit<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string(value).expect("serializable"));
    } else {
        let t = text();
        if !t.is_empty() {
            println!("{t}");
        }
    }
}

pub fn when(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_civil() {
        assert_eq!(super::when(0), "1970-01-01 00:00:00Z");
        assert_eq!(super::when(1_764_099_000_000), "2025-11-25 19:30:00Z");
    }
}
