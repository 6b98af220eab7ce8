//! Request bodies: size limit, content type, JSON, and the three shapes the
//! surface accepts (`features`, `event`, `instances`).

use axum::body::Body;
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value as Json};

use super::error::ApiError;

/// A parsed request body.
pub enum Payload {
    /// One object of named values (`{"features": {…}}` or `{"event": {…}}`).
    One(Map<String, Json>),
    /// `{"instances": [{…}, …]}`.
    Batch(Vec<Map<String, Json>>),
}

/// Reads at most `limit` bytes and parses a JSON object.
pub async fn read_json(headers: &HeaderMap, body: Body, limit: usize) -> Result<Map<String, Json>, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !(essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content-type must be application/json, got {ct:?}"
            )));
        }
    }
    let bytes = read_limited(body, limit).await?;
    if bytes.is_empty() {
        return Err(ApiError::Malformed("the request body is empty; expected a JSON object".into()));
    }
    match serde_json::from_slice::<Json>(&bytes) {
        Ok(Json::Object(obj)) => Ok(obj),
        Ok(_) => Err(ApiError::Malformed("the request body must be a JSON object".into())),
        Err(e) => Err(ApiError::Malformed(format!("the request body is not valid JSON: {e}"))),
    }
}

/// Reads a whole body of at most `limit` bytes (413 beyond).
pub async fn read_limited(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::TooLarge { limit }),
        Err(e) => Err(ApiError::Malformed(format!("cannot read the request body: {e}"))),
    }
}

/// `{"<key>": {…}}` or `{"instances": [{…}, …]}`.
pub fn payload(mut body: Map<String, Json>, key: &str) -> Result<Payload, ApiError> {
    if let Some(instances) = body.remove("instances") {
        let Json::Array(rows) = instances else {
            return Err(ApiError::Malformed("`instances` must be an array of objects".into()));
        };
        let rows = rows
            .into_iter()
            .enumerate()
            .map(|(i, row)| match row {
                Json::Object(m) => Ok(m),
                _ => Err(ApiError::Malformed(format!("instances[{i}] must be an object"))),
            })
            .collect::<Result<_, _>>()?;
        return Ok(Payload::Batch(rows));
    }
    match body.remove(key) {
        Some(Json::Object(m)) => Ok(Payload::One(m)),
        Some(_) => Err(ApiError::Malformed(format!("`{key}` must be an object"))),
        None => {
            Err(ApiError::Malformed(format!("the body needs `{key}` (an object) or `instances` (an array)")))
        }
    }
}
