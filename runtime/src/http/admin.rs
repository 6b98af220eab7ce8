//! `/admin/v1/`: upload, activate, roll back, delete and list plugin versions
//! (the logic is [`crate::admin::Admin`]). Every call needs
//! `Authorization: Bearer <token>`: none is 401, a wrong one 403. The admin
//! work (compiling, `init`, golden vectors, fsyncs) runs on the blocking pool.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::App;
use super::error::ApiError;
use crate::admin::{Admin, AdminError};

/// The admin side of a server: the store and the token that guards it.
pub struct AdminApi {
    admin: Arc<Admin>,
    token_digest: [u8; 32],
    /// Largest accepted upload (the tar as sent), in bytes.
    pub max_upload_bytes: usize,
}

impl AdminApi {
    /// Guards `admin` with `token` (which must not be empty).
    pub fn new(admin: Admin, token: &str, max_upload_bytes: usize) -> Self {
        assert!(!token.is_empty(), "an empty admin token would let anyone in");
        Self { admin: Arc::new(admin), token_digest: Sha256::digest(token.trim()).into(), max_upload_bytes }
    }

    /// Checks the bearer token. Digests are compared, so the time taken says
    /// nothing about how much of a guess was right.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let value = headers.get(header::AUTHORIZATION).ok_or(ApiError::Unauthorized)?;
        let token =
            value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or(ApiError::Unauthorized)?;
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
    let bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(ApiError::TooLarge { limit }),
        Err(e) => return Err(ApiError::Malformed(format!("cannot read the upload: {e}"))),
    };
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
