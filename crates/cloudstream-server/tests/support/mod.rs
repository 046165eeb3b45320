//! What the API tests share: sending a request through a real HTTP client and checking the
//! answer against the OpenAPI document the server itself serves at `/v1/openapi.json`.
//! Every JSON response of the suite goes through [`send`], so every one is validated: its
//! route, method and status must be documented, and its body must match the documented
//! schema (with unknown fields refused).

#![allow(dead_code)] // each test file uses part of it

pub(crate) mod server;

use std::collections::HashMap;
use std::sync::Mutex;

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{json, Value};

/// A client of one server: requests built on its base URL, every answer checked by [`send`].
pub(crate) struct Api {
    /// `http://HOST:PORT`.
    pub(crate) base: String,
    /// The HTTP client.
    pub(crate) http: reqwest::Client,
}

impl Api {
    /// A client of the server at `base`.
    pub(crate) fn new(base: String) -> Self {
        Api {
            base,
            http: reqwest::Client::new(),
        }
    }

    /// The URL of `path` on this server.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; returns the status and the JSON body (`null` when empty), both
    /// checked against the served OpenAPI document.
    pub(crate) async fn call(&self, request: RequestBuilder) -> (StatusCode, Value) {
        send(&self.http, request).await
    }

    /// `method url`, with a bearer token and a JSON body when given.
    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.call(request).await
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, self.url(path), None, None)
            .await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, self.url(path), None, Some(body))
            .await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::PUT, self.url(path), None, Some(body))
            .await
    }

    pub(crate) async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::DELETE, self.url(path), None, None)
            .await
    }
}

/// The `code` of an error body (`{"error": {"code", ...}}`).
pub(crate) fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("(no error code)")
}

/// Asserts an answer is the error `want` with code `code`.
#[track_caller]
pub(crate) fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!((status, error_code(body)), (want, code), "{body}");
}

/// Sends `request`; returns the status and the JSON body (`null` when empty), after checking
/// both against the server's OpenAPI document.
pub(crate) async fn send(http: &reqwest::Client, request: RequestBuilder) -> (StatusCode, Value) {
    let request = request.build().expect("a well-formed request");
    let (method, url) = (request.method().clone(), request.url().clone());
    let response = http.execute(request).await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    let doc = document(http, &url).await;
    if let Err(why) = verify(&doc, method.as_str(), url.path(), status, &body) {
        panic!("{why}");
    }
    (status, body)
}

/// The server's document, fetched once per server.
async fn document(http: &reqwest::Client, url: &reqwest::Url) -> Value {
    static DOCS: Mutex<Option<HashMap<String, Value>>> = Mutex::new(None);
    let origin = url.origin().ascii_serialization();
    if let Some(doc) = DOCS
        .lock()
        .expect("docs")
        .get_or_insert_with(HashMap::new)
        .get(&origin)
    {
        return doc.clone();
    }
    let doc: Value = http
        .get(format!("{origin}/v1/openapi.json"))
        .send()
        .await
        .expect("fetch the OpenAPI document")
        .json()
        .await
        .expect("the OpenAPI document is JSON");
    DOCS.lock()
        .expect("docs")
        .get_or_insert_with(HashMap::new)
        .insert(origin, doc.clone());
    doc
}

/// The documented path template `path` matches, the most specific one first.
fn template<'d>(doc: &'d Value, path: &str) -> Option<&'d str> {
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()?
        .keys()
        .filter(|t| {
            let parts: Vec<&str> = t.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p.starts_with('{') || p == s)
        })
        .min_by_key(|t| t.matches('{').count())
        .map(String::as_str)
}

/// Whether the response is what the document says; the error says why not.
pub(crate) fn verify(
    doc: &Value,
    method: &str,
    path: &str,
    status: StatusCode,
    body: &Value,
) -> Result<(), String> {
    let Some(template) = template(doc, path) else {
        // Unknown routes answer 404 with an error body, which no path documents.
        if status != StatusCode::NOT_FOUND {
            return Err(format!("{method} {path}: undocumented route"));
        }
        let error = json!({"$ref": "#/components/schemas/ErrorBody"});
        return validate(doc, &error, body, method, path);
    };
    let operation = &doc["paths"][template][method.to_ascii_lowercase()];
    if operation.is_null() {
        // The router answers 405, with an error body, for a known path with another method.
        if status != StatusCode::METHOD_NOT_ALLOWED {
            return Err(format!("{method} {template}: undocumented method"));
        }
        let error = json!({"$ref": "#/components/schemas/ErrorBody"});
        return validate(doc, &error, body, method, template);
    }
    let code = status.as_str();
    let range = format!("{}XX", &code[..1]);
    let responses = &operation["responses"];
    let response = [code, range.as_str(), "default"]
        .iter()
        .map(|k| &responses[*k])
        .find(|r| !r.is_null())
        .ok_or_else(|| format!("{method} {template}: status {code} is not documented"))?;
    match &response["content"]["application/json"]["schema"] {
        Value::Null if body.is_null() || response["content"].is_object() => Ok(()),
        Value::Null => Err(format!(
            "{method} {template} {code}: a body where none is documented: {body}"
        )),
        schema => validate(doc, schema, body, method, template),
    }
}

fn validate(
    doc: &Value,
    schema: &Value,
    body: &Value,
    method: &str,
    template: &str,
) -> Result<(), String> {
    // The response schema with the document's components beside it, so that
    // `#/components/schemas/...` references resolve.
    let mut root = schema.clone();
    if let Some(object) = root.as_object_mut() {
        object.insert("components".to_owned(), doc["components"].clone());
    }
    let validator = jsonschema::validator_for(&root)
        .map_err(|e| format!("{method} {template}: the documented schema is invalid: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {template}: the body does not match the OpenAPI document: {errors:#?}\nbody: {body}"
        ))
    }
}
