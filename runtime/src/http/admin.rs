//! `/admin/v1/`: upload, activate, roll back, delete and list plugin versions
//! (the logic is [`crate::control::admin::Admin`]). Every call needs
//! `Authorization: Bearer <token>`: none is 401, a wrong one 403. The admin
//! work (compiling, `init`, golden vectors, fsyncs) runs on the blocking pool.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::App;
use super::error::ApiError;
use crate::control::admin::{Admin, AdminError};
use crate::serving::traffic::RouteKey;

/// Time an upload's body has to arrive: plugin archives are large and deploy
/// tools may be far away, but never unbounded.
const UPLOAD_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The admin side of a server: the store and the token that guards it.
pub struct AdminApi {
    admin: Arc<Admin>,
    token_digest: [u8; 32],
    /// Largest accepted upload (the tar as sent), in bytes.
    pub max_upload_bytes: usize,
}

/// The shortest admin token accepted, in bytes (`openssl rand -hex 16`
/// prints 32): long enough that guessing it over the network is hopeless.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// Why an admin token was refused at start-up.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// Shorter than [`MIN_ADMIN_TOKEN_LEN`] (surrounding whitespace aside).
    #[error(
        "the admin token is {len} bytes; at least {MIN_ADMIN_TOKEN_LEN} are required \
         (e.g. `openssl rand -hex 16 > admin.token`)"
    )]
    TooShort {
        /// Its length.
        len: usize,
    },
}

impl AdminApi {
    /// Guards `admin` with `token`, which must be at least
    /// [`MIN_ADMIN_TOKEN_LEN`] bytes once trimmed. Called once, at start-up.
    pub fn new(admin: Admin, token: &str, max_upload_bytes: usize) -> Result<Self, AdminTokenError> {
        let token = token.trim();
        if token.len() < MIN_ADMIN_TOKEN_LEN {
            return Err(AdminTokenError::TooShort { len: token.len() });
        }
        Ok(Self { admin: Arc::new(admin), token_digest: Sha256::digest(token).into(), max_upload_bytes })
    }

    /// The admin logic, shared (the store watcher uses it too).
    pub fn admin(&self) -> Arc<Admin> {
        self.admin.clone()
    }

    /// Checks the bearer token. The scheme is case-insensitive (RFC 9110:
    /// `bearer`, `Bearer`); digests are compared, so the time taken says
    /// nothing about how much of a guess was right.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let value = headers.get(header::AUTHORIZATION).ok_or(ApiError::Unauthorized)?;
        let (scheme, token) =
            value.to_str().ok().and_then(|v| v.split_once(' ')).ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized);
        }
        let digest: [u8; 32] = Sha256::digest(token.trim()).into();
        if digest == self.token_digest { Ok(()) } else { Err(ApiError::Forbidden) }
    }
}

/// The admin API of `app`, after checking the request's token.
fn admin<'a>(app: &'a App, headers: &HeaderMap) -> Result<&'a AdminApi, ApiError> {
    let api = app.admin.as_ref().ok_or_else(|| {
        ApiError::NotFound("the admin API is not enabled (serve with --store and an admin token)".into())
    })?;
    api.authorize(headers)?;
    Ok(api)
}

/// Runs admin work on the blocking pool.
async fn blocking<T: Send + 'static>(
    api: &AdminApi,
    work: impl FnOnce(&Admin) -> Result<T, AdminError> + Send + 'static,
) -> Result<T, ApiError> {
    let admin = api.admin.clone();
    tokio::task::spawn_blocking(move || work(&admin))
        .await
        .map_err(|e| ApiError::Unavailable(format!("the admin worker failed: {e}")))?
        .map_err(ApiError::from)
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// `GET /admin/v1/plugins`: every plugin in the store, its versions and their states.
pub async fn list(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let api = admin(&app, req.headers())?;
    let plugins = blocking(api, |a| a.list()).await?;
    Ok(json(StatusCode::OK, json!({ "plugins": plugins })))
}

/// `PUT /admin/v1/plugins/{name}/versions/{version}`: a tar of the plugin
/// directory's contents. Stored atomically, then gated; 201 with the gate's
/// fuel and latency per golden vector, or 422 `gate_failed` with the reasons.
pub async fn upload(
    app: Arc<App>,
    name: String,
    version: String,
    req: Request,
) -> Result<Response, ApiError> {
    let api = admin(&app, req.headers())?;
    let limit = api.max_upload_bytes;
    let bytes = super::codec::read_limited(req.into_body(), limit, UPLOAD_READ_TIMEOUT).await?;
    let (n, v) = (name.clone(), version.clone());
    let gate = blocking(api, move |a| a.upload(&n, &v, &bytes)).await?;
    Ok(json(StatusCode::CREATED, json!({ "name": name, "version": version, "state": "ready", "gate": gate })))
}

/// `POST /admin/v1/plugins/{name}/versions/{version}/activate`.
pub async fn activate(
    app: Arc<App>,
    name: String,
    version: String,
    req: Request,
) -> Result<Response, ApiError> {
    let api = admin(&app, req.headers())?;
    let swap = blocking(api, move |a| a.activate(&name, &version)).await?;
    Ok(json(StatusCode::OK, json!(swap)))
}

/// `POST /admin/v1/plugins/{name}/rollback`: the previous version goes live.
pub async fn rollback(app: Arc<App>, name: String, req: Request) -> Result<Response, ApiError> {
    let api = admin(&app, req.headers())?;
    let swap = blocking(api, move |a| a.rollback(&name)).await?;
    Ok(json(StatusCode::OK, json!(swap)))
}

/// `DELETE /admin/v1/plugins/{name}/versions/{version}`: not the live one.
pub async fn delete(
    app: Arc<App>,
    name: String,
    version: String,
    req: Request,
) -> Result<Response, ApiError> {
    let api = admin(&app, req.headers())?;
    let (n, v) = (name.clone(), version.clone());
    blocking(api, move |a| a.delete(&n, &v)).await?;
    Ok(json(StatusCode::OK, json!({ "name": name, "version": version, "deleted": true })))
}

/// The JSON body of an admin call, as an object.
async fn body(app: &App, req: Request) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let (parts, body) = req.into_parts();
    super::codec::read_json(&parts.headers, body, &app.config).await
}

fn field<'a>(
    b: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<&'a serde_json::Value, ApiError> {
    b.get(key).ok_or_else(|| ApiError::Malformed(format!("the body needs `{key}`")))
}

/// A string field of an admin call's body.
fn text(b: &serde_json::Map<String, serde_json::Value>, key: &str) -> Result<String, ApiError> {
    field(b, key)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Malformed(format!("`{key}` must be a string")))
}

/// `POST /admin/v1/plugins/{name}/canary`: `{"version", "percent", "key"}` —
/// `percent` of routing keys (`key`: `header:<name>` or a row field) go to
/// `version` (gated first).
pub async fn canary(app: Arc<App>, name: String, req: Request) -> Result<Response, ApiError> {
    let api = admin(&app, req.headers())?;
    let b = body(&app, req).await?;
    let version = text(&b, "version")?;
    let percent = field(&b, "percent")?
        .as_u64()
        .and_then(|p| u8::try_from(p).ok())
        .ok_or_else(|| ApiError::Malformed("`percent` must be an integer from 0 to 100".into()))?;
    let key = RouteKey::parse(&text(&b, "key")?).map_err(|e| ApiError::Malformed(e.to_string()))?;
    let (n, v, k) = (name.clone(), version.clone(), key.to_string());
    blocking(api, move |a| a.start_canary(&n, &v, percent, key)).await?;
    Ok(json(
        StatusCode::OK,
        json!({ "name": name, "canary": { "version": version, "percent": percent, "key": k } }),
    ))
}

/// `POST /admin/v1/plugins/{name}/canary/promote`: the canary's version goes live.
pub async fn promote(app: Arc<App>, name: String, req: Request) -> Result<Response, ApiError> {
    let api = admin(&app, req.headers())?;
    let swap = blocking(api, move |a| a.promote_canary(&name)).await?;
    Ok(json(StatusCode::OK, json!(swap)))
}

/// `DELETE /admin/v1/plugins/{name}/canary`: abort; all traffic to the live version.
pub async fn abort(app: Arc<App>, name: String, req: Request) -> Result<Response, ApiError> {
    let api = admin(&app, req.headers())?;
    let n = name.clone();
    blocking(api, move |a| a.abort_canary(&n)).await?;
    Ok(json(StatusCode::OK, json!({ "name": name, "canary": null })))
}

/// `POST /admin/v1/plugins/{name}/shadow`: `{"version", "max_in_flight"?}` —
/// run `version` (gated first) on copies of live traffic.
pub async fn shadow(app: Arc<App>, name: String, req: Request) -> Result<Response, ApiError> {
    let api = admin(&app, req.headers())?;
    let b = body(&app, req).await?;
    let version = text(&b, "version")?;
    let max = match b.get("max_in_flight") {
        None => 32,
        Some(m) => m
            .as_u64()
            .ok_or_else(|| ApiError::Malformed("`max_in_flight` must be a positive integer".into()))?
            as usize,
    };
    let (n, v) = (name.clone(), version.clone());
    blocking(api, move |a| a.start_shadow(&n, &v, max)).await?;
    Ok(json(StatusCode::OK, json!({ "name": name, "shadow": { "version": version, "max_in_flight": max } })))
}

/// `DELETE /admin/v1/plugins/{name}/shadow`: stop; answers the final counts.
pub async fn unshadow(app: Arc<App>, name: String, req: Request) -> Result<Response, ApiError> {
    let api = admin(&app, req.headers())?;
    let n = name.clone();
    let stats = blocking(api, move |a| a.stop_shadow(&n)).await?;
    Ok(json(StatusCode::OK, json!({ "name": name, "stats": stats })))
}
