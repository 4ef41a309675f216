//! SageMaker scorer: `InvokeEndpoint` with the TensorFlow Serving JSON format (or CSV), a
//! timeout, and an optional fallback scorer (the bundled ONNX model) used when the endpoint
//! fails; a result from the fallback says so in its `source`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sagemakerruntime::primitives::Blob;
use aws_sdk_sagemakerruntime::Client;
use serde_json::{json, Value};
use vigil_core::profile::SagemakerFormat;
use vigil_core::scorer::{argmax_label, Baseline, Score, ScoreError, Scorer};
use vigil_core::transform::Matrix;

use crate::error::is_retryable;

/// Source of a result produced by the fallback model.
pub const FALLBACK_SOURCE: &str = "sagemaker-fallback-onnx";

#[derive(Clone)]
pub struct SagemakerScorer {
    client: Client,
    endpoint: String,
    labels: Vec<String>,
    format: SagemakerFormat,
    timeout: Duration,
    fallback: Option<Arc<dyn Scorer>>,
}

impl std::fmt::Debug for SagemakerScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagemakerScorer")
            .field("endpoint", &self.endpoint)
            .field("format", &self.format)
            .field("timeout", &self.timeout)
            .field("fallback", &self.fallback.as_ref().map(|s| s.version()))
            .finish()
    }
}

impl SagemakerScorer {
    pub fn new(
        client: Client,
        endpoint: impl Into<String>,
        labels: Vec<String>,
        format: SagemakerFormat,
        timeout: Duration,
        fallback: Option<Arc<dyn Scorer>>,
    ) -> Self {
        Self {
            client,
            endpoint: endpoint.into(),
            labels,
            format,
            timeout,
            fallback,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn invoke(&self, input: &Matrix) -> Result<Vec<f32>, ScoreError> {
        let (content_type, body) = encode_request(self.format, input);
        let call = self
            .client
            .invoke_endpoint()
            .endpoint_name(&self.endpoint)
            .content_type(content_type)
            .accept(content_type)
            .body(Blob::new(body))
            .send();
        let out = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => {
                return Err(ScoreError::Unavailable(format!(
                    "endpoint {} did not answer within {} ms",
                    self.endpoint,
                    self.timeout.as_millis()
                )))
            }
            Ok(Err(e)) => {
                let message = format!(
                    "endpoint {}: {}",
                    self.endpoint,
                    aws_sdk_sagemakerruntime::error::DisplayErrorContext(&e)
                );
                return Err(if is_retryable(&e) {
                    ScoreError::Unavailable(message)
                } else {
                    ScoreError::Failed(message)
                });
            }
            Ok(Ok(out)) => out,
        };
        let body = out.body.map(Blob::into_inner).unwrap_or_default();
        let probabilities = decode_response(self.format, &body)
            .map_err(|e| ScoreError::Failed(format!("endpoint {} answered {e}", self.endpoint)))?;
        if probabilities.len() != self.labels.len() {
            return Err(ScoreError::Failed(format!(
                "endpoint {} returned {} probabilities for {} labels",
                self.endpoint,
                probabilities.len(),
                self.labels.len()
            )));
        }
        Ok(probabilities)
    }
}

/// The request body: TF Serving `{"instances": [window]}` (window = rows of channel values), or
/// one CSV line holding the window row after row.
pub fn encode_request(format: SagemakerFormat, input: &Matrix) -> (&'static str, Vec<u8>) {
    match format {
        SagemakerFormat::TfServing => {
            let rows: Vec<&[f32]> = (0..input.rows).map(|r| input.row(r)).collect();
            (
                "application/json",
                serde_json::to_vec(&json!({ "instances": [rows] })).expect("numbers serialize"),
            )
        }
        SagemakerFormat::Csv => {
            let line: Vec<String> = input.data.iter().map(|v| v.to_string()).collect();
            ("text/csv", format!("{}\n", line.join(",")).into_bytes())
        }
    }
}

/// Probabilities of the first (only) instance.
pub fn decode_response(format: SagemakerFormat, body: &[u8]) -> Result<Vec<f32>, String> {
    match format {
        SagemakerFormat::TfServing => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| format!("invalid JSON ({e}): {}", preview(body)))?;
            let first = v
                .get("predictions")
                .and_then(Value::as_array)
                .and_then(|p| p.first())
                .ok_or_else(|| format!("no predictions: {}", preview(body)))?;
            // `[[p0, p1, ...]]` for a batch of one, or `[p0, p1, ...]` from some servers.
            let row = match first {
                Value::Array(row) => row.clone(),
                Value::Number(_) => v["predictions"].as_array().cloned().unwrap_or_default(),
                _ => return Err(format!("unexpected predictions: {}", preview(body))),
            };
            row.iter()
                .map(|x| {
                    x.as_f64()
                        .map(|f| f as f32)
                        .ok_or_else(|| format!("non-numeric prediction {x}"))
                })
                .collect()
        }
        SagemakerFormat::Csv => {
            let text = std::str::from_utf8(body).map_err(|_| "non-UTF-8 CSV".to_string())?;
            let line = text.lines().next().unwrap_or_default();
            line.split(',')
                .map(|x| {
                    x.trim()
                        .parse::<f32>()
                        .map_err(|_| format!("non-numeric CSV value {x:?}"))
                })
                .collect()
        }
    }
}

fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(120).collect()
}

#[async_trait]
impl Scorer for SagemakerScorer {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn version(&self) -> String {
        format!("sagemaker:{}", self.endpoint)
    }

    async fn score(
        &self,
        input: &Matrix,
        baseline: &mut Option<Baseline>,
    ) -> Result<Score, ScoreError> {
        match self.invoke(input).await {
            Ok(probabilities) => Ok(Score {
                label: argmax_label(&self.labels, &probabilities)
                    .ok_or_else(|| ScoreError::Failed("no probabilities".into()))?,
                probabilities,
                anomaly_score: None,
                source: "sagemaker".into(),
                model_version: self.version(),
                // A remote endpoint: occlusion would cost one invocation per channel.
                contributions: vec![],
            }),
            Err(e) => match &self.fallback {
                Some(fallback) => {
                    tracing::warn!(endpoint = %self.endpoint, error = %e, "SageMaker failed; scoring with the fallback model");
                    let mut score = fallback.score(input, baseline).await?;
                    score.source = FALLBACK_SOURCE.into();
                    Ok(score)
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        let m = Matrix::new(2, 2, vec![1.0, 2.5, 3.0, 4.0]);
        let (ct, body) = encode_request(SagemakerFormat::TfServing, &m);
        assert_eq!(ct, "application/json");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"instances": [[[1.0, 2.5], [3.0, 4.0]]]})
        );
        assert_eq!(
            decode_response(
                SagemakerFormat::TfServing,
                br#"{"predictions": [[0.1, 0.9]]}"#
            )
            .unwrap(),
            vec![0.1, 0.9]
        );
        assert_eq!(
            decode_response(
                SagemakerFormat::TfServing,
                br#"{"predictions": [0.2, 0.8]}"#
            )
            .unwrap(),
            vec![0.2, 0.8]
        );
        assert!(decode_response(SagemakerFormat::TfServing, b"nope").is_err());
        assert!(decode_response(SagemakerFormat::TfServing, br#"{"predictions": []}"#).is_err());
        let (ct, body) = encode_request(SagemakerFormat::Csv, &m);
        assert_eq!((ct, body.as_slice()), ("text/csv", &b"1,2.5,3,4\n"[..]));
        assert_eq!(
            decode_response(SagemakerFormat::Csv, b"0.25,0.75\n").unwrap(),
            vec![0.25, 0.75]
        );
    }
}
