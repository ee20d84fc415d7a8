//! Why the admin API refused a request, and the one place that maps a refusal
//! to its HTTP status and JSON body (`{"error": "..."}`), as
//! `RequestError::answer` does for SIP.
//!
//! | variant | status |
//! |---|---|
//! | `ForeignHost` | 421 |
//! | `ForeignOrigin`, `SimpleChange`, `NoToken` | 403 |
//! | `BadToken` | 401 |
//! | `BadRequest` | 400 |
//! | `NoTenant`, `NoEndpoint`, `NotFound` | 404 |
//! | `NoDatabase`, `Conflict` | 409 |
//! | `TooLarge` | 413 |
//! | `Refused` | 422 |
//! | `Lifecycle` | by kind: 404, 409, 422 or 400 |
//! | `Database` | 422 for what the database refused, 503 when out of reach |
//! | `Internal` | 500 |

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::db::DbError;
use crate::policy::LifecycleError;

/// Why the admin API refused a request.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// `Host` is not one of the API's names (DNS rebinding).
    #[error("Host is not this API's (add the name to [admin] names)")]
    ForeignHost,
    /// `Origin` is another site's.
    #[error("requests from another origin are refused")]
    ForeignOrigin,
    /// A change a form on another site could send.
    #[error("a change needs an Authorization or X-Uploaded-By header, or a non-form Content-Type")]
    SimpleChange,
    /// A change, and no token is configured.
    #[error(
        "changes need an admin token: set [admin] token_file = \"admin.token\" (created at the router's first start) or token"
    )]
    NoToken,
    /// No bearer token, or not the configured one.
    #[error("a bearer token is required")]
    BadToken,
    /// A malformed parameter.
    #[error("{0}")]
    BadRequest(String),
    /// No tenant with this id.
    #[error("no tenant `{0}`")]
    NoTenant(String),
    /// No such method and path.
    #[error("no such endpoint")]
    NoEndpoint,
    /// Something else the path names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Policy versions without a directory database.
    #[error("policy versions live in the directory database; this router reads a directory file")]
    NoDatabase,
    /// The request contradicts the state it acts on.
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than a component may be.
    #[error("{0}")]
    TooLarge(String),
    /// What was asked for was tried and refused (a policy that does not load,
    /// a configuration that does not validate).
    #[error("{0}")]
    Refused(String),
    /// The policy lifecycle refused.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The directory database refused or is out of reach.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The work failed in the router (a task that panicked).
    #[error("{0}")]
    Internal(String),
}

impl From<tokio::task::JoinError> for AdminError {
    fn from(e: tokio::task::JoinError) -> Self {
        AdminError::Internal(format!("the request's work failed: {e}"))
    }
}

impl AdminError {
    /// The HTTP status the API answers this with.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::ForeignHost => StatusCode::MISDIRECTED_REQUEST,
            AdminError::ForeignOrigin | AdminError::SimpleChange | AdminError::NoToken => StatusCode::FORBIDDEN,
            AdminError::BadToken => StatusCode::UNAUTHORIZED,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NoTenant(_) | AdminError::NoEndpoint | AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::NoDatabase | AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Lifecycle(e) => match e {
                LifecycleError::NoSuchVersion(_) | LifecycleError::NoCandidate => StatusCode::NOT_FOUND,
                LifecycleError::NoPrevious | LifecycleError::RolledBack(_) | LifecycleError::Database => {
                    StatusCode::CONFLICT
                }
                LifecycleError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
                LifecycleError::Invalid(_) => StatusCode::BAD_REQUEST,
            },
            AdminError::Database(DbError::Invalid(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Database(DbError::RolledBack(_)) => StatusCode::CONFLICT,
            AdminError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response: [`Self::status`] and `{"error": message}`.
    pub fn response(&self) -> Response<Full<Bytes>> {
        super::reply(self.status(), &json!({ "error": self.to_string() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, so that the table in the module's documentation and the
    /// mapping cannot drift apart unnoticed.
    fn every_variant() -> Vec<AdminError> {
        vec![
            AdminError::ForeignHost,
            AdminError::ForeignOrigin,
            AdminError::SimpleChange,
            AdminError::NoToken,
            AdminError::BadToken,
            AdminError::BadRequest("x".into()),
            AdminError::NoTenant("x".into()),
            AdminError::NoEndpoint,
            AdminError::NotFound("x".into()),
            AdminError::NoDatabase,
            AdminError::Conflict("x".into()),
            AdminError::TooLarge("x".into()),
            AdminError::Refused("x".into()),
            AdminError::Lifecycle(LifecycleError::NoCandidate),
            AdminError::Database(DbError::Invalid("x".into())),
            AdminError::Internal("x".into()),
        ]
    }

    #[test]
    fn every_variant_is_in_the_documentation_table_with_its_status() {
        let doc = include_str!("error.rs");
        for e in every_variant() {
            let name = format!("{e:?}");
            let name = name.split(['(', ' ']).next().unwrap_or_default().to_owned();
            let row = doc
                .lines()
                .find(|l| l.starts_with("//! |") && l.contains(&format!("`{name}`")))
                .unwrap_or_else(|| panic!("{name} has no row in the table"));
            if !matches!(e, AdminError::Lifecycle(_) | AdminError::Database(_)) {
                assert!(row.contains(e.status().as_str()), "{name}: {row} does not say {}", e.status());
            }
        }
    }

    #[test]
    fn the_body_is_the_message_as_json() {
        let r = AdminError::NoTenant("fabrikam".into()).response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            r.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
    }
}
