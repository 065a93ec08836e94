//! The admin API client used by the CLI (blocking HTTP on loopback, bearer token).

use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

use super::{Conn, Exit};

/// A connection to a running server's admin API.
pub struct AdminClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// A failed request, already classified into an exit status.
#[derive(Debug)]
pub struct ClientError {
    pub exit: Exit,
    pub message: String,
}

impl AdminClient {
    /// Finds the server (flag, env, config, default) and reads the token (env, data dir).
    pub fn from_conn(conn: &Conn) -> Result<AdminClient, ClientError> {
        let cfg = super::load_config(conn.config.as_deref()).map_err(|m| ClientError {
            exit: Exit::Usage,
            message: m,
        })?;
        let base = match &conn.admin {
            Some(a) if a.starts_with("http://") => a.trim_end_matches('/').to_string(),
            Some(a) => format!("http://{}", a.trim_end_matches('/')),
            None => format!("http://{}", cfg.admin.listen),
        };
        let token = match std::env::var("MAILBRAKE_ADMIN_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let dir: PathBuf = conn.data_dir.clone().unwrap_or(cfg.server.data_dir);
                let path = dir.join("admin.token");
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_string())
                    .map_err(|e| ClientError {
                        exit: Exit::Usage,
                        message: format!(
                            "cannot read the admin token {}: {e} (use --data-dir or MAILBRAKE_ADMIN_TOKEN)",
                            path.display()
                        ),
                    })?
            }
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(300)))
            .timeout_connect(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(AdminClient { base, token, agent })
    }

    fn classify(&self, e: ureq::Error) -> ClientError {
        ClientError {
            exit: Exit::Unreachable,
            message: format!("cannot reach the mailbrake admin API at {}: {e}", self.base),
        }
    }

    fn finish(
        &self,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<(u16, Value), ClientError> {
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.classify(e))?;
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// GET returning JSON: (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, Value), ClientError> {
        let resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| self.classify(e))?;
        self.finish(resp)
    }

    /// GET returning raw bytes.
    pub fn get_bytes(&self, path: &str) -> Result<(u16, Vec<u8>), ClientError> {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| self.classify(e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| self.classify(e))?;
        Ok((status, bytes))
    }

    /// POST a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), ClientError> {
        let resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .send_json(body)
            .map_err(|e| self.classify(e))?;
        self.finish(resp)
    }
}

/// The `error` field of an API error body.
pub fn api_error(v: &Value) -> String {
    v.get("error")
        .and_then(Value::as_str)
        .unwrap_or("unexpected response")
        .to_string()
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
