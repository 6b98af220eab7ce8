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
use crate::control::fleet::ops::{FleetControl, FleetOp};
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
    /// In fleet mode, the fleet's desired state: local changes are refused.
    fleet: Option<Arc<dyn FleetControl>>,
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
        Ok(Self {
            admin: Arc::new(admin),
            token_digest: Sha256::digest(token).into(),
            max_upload_bytes,
            fleet: None,
        })
    }

    /// Fleet mode: `/admin/v1/fleet/…` changes the fleet through `fleet`, and
    /// the local upload, activate, rollback, delete, canary and shadow
    /// routes answer 409 `fleet_mode`. Called once, at start-up.
    pub fn with_fleet(mut self, fleet: Arc<dyn FleetControl>) -> Self {
        self.fleet = Some(fleet);
        self
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

/// The admin API of `app` for a local change: refused on a fleet replica.
fn local_change<'a>(app: &'a App, headers: &HeaderMap) -> Result<&'a AdminApi, ApiError> {
    let api = admin(app, headers)?;
    if api.fleet.is_some() {
        return Err(ApiError::FleetMode);
    }
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
    let api = local_change(&app, req.headers())?;
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
    let api = local_change(&app, req.headers())?;
    let swap = blocking(api, move |a| a.activate(&name, &version)).await?;
    Ok(json(StatusCode::OK, json!(swap)))
}

/// `POST /admin/v1/plugins/{name}/rollback`: the previous version goes live.
pub async fn rollback(app: Arc<App>, name: String, req: Request) -> Result<Response, ApiError> {
    let api = local_change(&app, req.headers())?;
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
    let api = local_change(&app, req.headers())?;
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
    let api = local_change(&app, req.headers())?;
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
    let api = local_change(&app, req.headers())?;
    let swap = blocking(api, move |a| a.promote_canary(&name)).await?;
    Ok(json(StatusCode::OK, json!(swap)))
}

/// `DELETE /admin/v1/plugins/{name}/canary`: abort; all traffic to the live version.
pub async fn abort(app: Arc<App>, name: String, req: Request) -> Result<Response, ApiError> {
    let api = local_change(&app, req.headers())?;
    let n = name.clone();
    blocking(api, move |a| a.abort_canary(&n)).await?;
    Ok(json(StatusCode::OK, json!({ "name": name, "canary": null })))
}

/// `POST /admin/v1/plugins/{name}/shadow`: `{"version", "max_in_flight"?}` —
/// run `version` (gated first) on copies of live traffic.
pub async fn shadow(app: Arc<App>, name: String, req: Request) -> Result<Response, ApiError> {
    let api = local_change(&app, req.headers())?;
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
    let api = local_change(&app, req.headers())?;
    let n = name.clone();
    let stats = blocking(api, move |a| a.stop_shadow(&n)).await?;
    Ok(json(StatusCode::OK, json!({ "name": name, "stats": stats })))
}

/// The fleet of `app`, after checking the request's token; 404 outside fleet mode.
fn fleet<'a>(app: &'a App, headers: &HeaderMap) -> Result<&'a Arc<dyn FleetControl>, ApiError> {
    admin(app, headers)?.fleet.as_ref().ok_or_else(|| {
        ApiError::NotFound("this server is not a fleet replica (serve with --fleet-etcd)".into())
    })
}

/// `GET /admin/v1/fleet`: every plugin's desired state, every replica's
/// report, and whether each plugin has converged.
pub async fn fleet_status(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let status = fleet(&app, req.headers())?.status().await?;
    Ok(json(StatusCode::OK, json!(status)))
}

/// `POST /admin/v1/fleet/plugins/{name}/{op}`: one change to the fleet's
/// state of `name`, as `scorehost fleet <op>` makes it. `op` and its body:
/// `stage` `{"reference", "plain_http"?}`, `activate` `{"keep_versions"?}`,
/// `rollback`, `canary` `{"digest", "percent", "key"}`, `promote`
/// `{"keep_versions"?}`, `abort`, `shadow` `{"digest"}` (`null` stops it).
/// 409 `refused` names each replica that is not ready and why; 409
/// `conflict` when someone else changed the state first.
pub async fn fleet_change(
    app: Arc<App>,
    name: String,
    op: String,
    req: Request,
) -> Result<Response, ApiError> {
    let fleet = fleet(&app, req.headers())?.clone();
    let b = optional_body(&app, req).await?;
    let keep = |b: &serde_json::Map<String, serde_json::Value>| match b.get("keep_versions") {
        None => Ok(crate::control::fleet::desired::DEFAULT_KEEP_PREVIOUS),
        Some(k) => k
            .as_u64()
            .filter(|k| (1..=64).contains(k))
            .map(|k| k as usize)
            .ok_or_else(|| ApiError::Malformed("`keep_versions` must be an integer from 1 to 64".into())),
    };
    let op = match op.as_str() {
        "stage" => FleetOp::Stage {
            reference: text(&b, "reference")?,
            plain_http: b.get("plain_http").and_then(serde_json::Value::as_bool).unwrap_or(false),
        },
        "activate" => FleetOp::Activate { keep_versions: keep(&b)? },
        "rollback" => FleetOp::Rollback,
        "canary" => FleetOp::Canary {
            digest: text(&b, "digest")?,
            percent: field(&b, "percent")?
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| ApiError::Malformed("`percent` must be an integer from 1 to 100".into()))?,
            key: text(&b, "key")?,
        },
        "promote" => FleetOp::Promote { keep_versions: keep(&b)? },
        "abort" => FleetOp::Abort,
        "shadow" => FleetOp::Shadow {
            digest: match field(&b, "digest")? {
                serde_json::Value::Null => None,
                serde_json::Value::String(d) => Some(d.clone()),
                _ => return Err(ApiError::Malformed("`digest` must be a string or null".into())),
            },
        },
        other => {
            return Err(ApiError::NotFound(format!(
                "no fleet operation `{other}` (stage, activate, rollback, canary, promote, abort, shadow)"
            )));
        }
    };
    let changed = fleet.change(&name, op).await?;
    Ok(json(StatusCode::OK, json!(changed)))
}

/// The JSON object body of a call whose body is optional: none is `{}`.
async fn optional_body(
    app: &App,
    req: Request,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let (parts, body) = req.into_parts();
    let empty = parts.headers.get(header::CONTENT_LENGTH).is_some_and(|l| l == "0")
        || (parts.headers.get(header::CONTENT_TYPE).is_none()
            && parts.headers.get(header::TRANSFER_ENCODING).is_none()
            && parts.headers.get(header::CONTENT_LENGTH).is_none());
    if empty {
        return Ok(serde_json::Map::new());
    }
    super::codec::read_json(&parts.headers, body, &app.config).await
}
