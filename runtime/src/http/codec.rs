//! Request bodies: size limit, read timeout, content type, strict JSON, and
//! the three shapes the surface accepts (`features`, `event`, `instances`),
//! each bounded in rows and fields.
//!
//! JSON is parsed strictly: a key given twice in one object is an error
//! (serde_json alone keeps the last one, silently — a fraud feature sent
//! twice with two values must not be resolved by a parser detail), and
//! nesting deeper than 128 levels is an error (serde_json's recursion limit).

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value as Json};

use super::ServerConfig;
use super::error::ApiError;

/// A parsed request body.
pub enum Payload {
    /// One object of named values (`{"features": {…}}` or `{"event": {…}}`).
    One(Map<String, Json>),
    /// `{"instances": [{…}, …]}`.
    Batch(Vec<Map<String, Json>>),
}

/// Reads at most `config.max_body_bytes` bytes within `config.body_read_timeout`
/// and parses a JSON object.
pub async fn read_json(
    headers: &HeaderMap,
    body: Body,
    config: &ServerConfig,
) -> Result<Map<String, Json>, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !(essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content-type must be application/json, got {ct:?}"
            )));
        }
    }
    let bytes = read_limited(body, config.max_body_bytes, config.body_read_timeout).await?;
    parse_object(&bytes)
}

/// Parses a request body as one JSON object, strictly (see the module docs).
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Json>, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::Malformed("the request body is empty; expected a JSON object".into()));
    }
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Json::Object(obj))) => Ok(obj),
        Ok(_) => Err(ApiError::Malformed("the request body must be a JSON object".into())),
        Err(e) => Err(ApiError::Malformed(format!("the request body is not valid JSON: {e}"))),
    }
}

/// Reads a whole body of at most `limit` bytes (413 beyond) within `timeout`
/// (408 beyond: a client dripping its body cannot hold a connection and a
/// buffer for ever).
pub async fn read_limited(
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<axum::body::Bytes, ApiError> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::BodyTimeout { timeout }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(ApiError::TooLarge { limit }),
        Ok(Err(e)) => Err(ApiError::Malformed(format!("cannot read the request body: {e}"))),
    }
}

/// A JSON value whose objects have no duplicate keys.
struct Strict(Json);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Number::from_f64(v).map(Json::Number).ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            match out.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(v);
                }
                Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format!("duplicate key `{}` in one object", slot.key())));
                }
            }
        }
        Ok(Json::Object(out))
    }
}

/// `{"<key>": {…}}` or `{"instances": [{…}, …]}`, at most `config.max_batch_rows`
/// rows of at most `config.max_fields` fields each.
pub fn payload(mut body: Map<String, Json>, key: &str, config: &ServerConfig) -> Result<Payload, ApiError> {
    let fields = |m: &Map<String, Json>| {
        if m.len() > config.max_fields {
            Err(ApiError::TooManyFields { fields: m.len(), limit: config.max_fields })
        } else {
            Ok(())
        }
    };
    if body.contains_key("instances") && body.contains_key(key) {
        return Err(ApiError::Malformed(format!(
            "the body has both `{key}` and `instances`: send one row (`{key}`) or a batch (`instances`), not both"
        )));
    }
    if let Some(instances) = body.remove("instances") {
        let Json::Array(rows) = instances else {
            return Err(ApiError::Malformed("`instances` must be an array of objects".into()));
        };
        if rows.len() > config.max_batch_rows {
            return Err(ApiError::TooManyRows { rows: rows.len(), limit: config.max_batch_rows });
        }
        let rows = rows
            .into_iter()
            .enumerate()
            .map(|(i, row)| match row {
                Json::Object(m) => fields(&m).map(|()| m),
                _ => Err(ApiError::Malformed(format!("instances[{i}] must be an object"))),
            })
            .collect::<Result<_, _>>()?;
        return Ok(Payload::Batch(rows));
    }
    match body.remove(key) {
        Some(Json::Object(m)) => fields(&m).map(|()| Payload::One(m)),
        Some(_) => Err(ApiError::Malformed(format!("`{key}` must be an object"))),
        None => {
            Err(ApiError::Malformed(format!("the body needs `{key}` (an object) or `instances` (an array)")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_with_one_row_and_a_batch_is_ambiguous() {
        let body = |text: &str| parse_object(text.as_bytes()).unwrap();
        let config = ServerConfig::default();
        let both = payload(body(r#"{"features": {"a": 1}, "instances": [{"a": 2}]}"#), "features", &config);
        assert!(matches!(both, Err(ApiError::Malformed(m)) if m.contains("both")));
        assert!(payload(body(r#"{"features": {"a": 1}}"#), "features", &config).is_ok());
        assert!(payload(body(r#"{"instances": [{"a": 2}]}"#), "features", &config).is_ok());
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        assert!(parse_object(br#"{"a": 1, "b": {"c": 1, "d": 2}}"#).is_ok());
        for body in
            [&br#"{"a": 1, "a": 2}"#[..], br#"{"x": {"c": 1, "c": 1}}"#, br#"{"x": [{"c": 1, "c": 2}]}"#]
        {
            let e = parse_object(body).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{e}");
        }
    }

    #[test]
    fn nesting_out_of_range_numbers_and_bad_utf8_are_malformed() {
        let deep = format!("{{\"a\": {}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        for body in [deep.as_bytes(), br#"{"a": 1e400}"#, b"{\"a\": \"\xff\xfe\"}", b"\xef\xbb\xbf{}"] {
            assert!(matches!(parse_object(body), Err(ApiError::Malformed(_))));
        }
        // Same values as serde_json's own parser otherwise.
        let text =
            br#"{"i": -3, "u": 18446744073709551615, "f": 0.1, "s": "\u00e9", "n": null, "v": [1.5, 2]}"#;
        let want: Json = serde_json::from_slice(text).unwrap();
        assert_eq!(Json::Object(parse_object(text).unwrap()), want);
    }
}
