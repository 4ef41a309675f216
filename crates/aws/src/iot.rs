//! Results to the device through the IoT data plane: the `dt/vigil/{thing}/condition` topic
//! (QoS 1) and the named shadow `condition`; and what became of operators' alarm actions, as
//! the `reported` side of the named shadow `alarm`.

use async_trait::async_trait;
use aws_sdk_iotdataplane::primitives::Blob;
use aws_sdk_iotdataplane::Client;
use vigil_core::documents::shadow_document;
use vigil_core::ports::{AlarmReports, PortError, ResultSink, WindowResult};
use vigil_core::telemetry::{condition_topic, CONDITION_SHADOW};
use vigil_core::DeviceId;

use crate::error::port_error;

const PORT: &str = "results";

#[derive(Clone, Debug)]
pub struct IotResultSink {
    client: Client,
}

impl IotResultSink {
    /// `client` must point at the account's `iot:Data-ATS` endpoint.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// `UpdateThingShadow` of one named shadow of `device` with `payload` (a JSON document).
    async fn update_shadow(
        &self,
        device: &DeviceId,
        shadow: &str,
        payload: Vec<u8>,
    ) -> Result<(), PortError> {
        self.client
            .update_thing_shadow()
            .thing_name(device.as_str())
            .shadow_name(shadow)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| port_error(PORT, &format!("update shadow {shadow} of {device}"), e))?;
        Ok(())
    }
}

#[async_trait]
impl ResultSink for IotResultSink {
    async fn publish(&self, result: &WindowResult) -> Result<(), PortError> {
        let payload = serde_json::to_vec(result)
            .map_err(|e| PortError::permanent(PORT, format!("result of {}: {e}", result.device)))?;
        let topic = condition_topic(&result.device);
        let shadow = serde_json::to_vec(&shadow_document(result))
            .map_err(|e| PortError::permanent(PORT, format!("shadow of {}: {e}", result.device)))?;
        // The topic and the shadow do not depend on each other: one round trip for both.
        let publish = async {
            self.client
                .publish()
                .topic(&topic)
                .qos(1)
                .content_type("application/json")
                .payload(Blob::new(payload))
                .send()
                .await
                .map_err(|e| {
                    port_error(
                        PORT,
                        &format!("publish window {} to {topic}", result.window),
                        e,
                    )
                })
        };
        let update_shadow = self.update_shadow(&result.device, CONDITION_SHADOW, shadow);
        futures_util::future::try_join(publish, update_shadow).await?;
        Ok(())
    }
}

/// Named shadow whose desired side carries operators' alarm actions (docs/operators.md).
pub const ALARM_SHADOW: &str = "alarm";

#[async_trait]
impl AlarmReports for IotResultSink {
    async fn report(
        &self,
        device: &DeviceId,
        reported: &serde_json::Value,
    ) -> Result<(), PortError> {
        let payload = serde_json::to_vec(&serde_json::json!({"state": {"reported": reported}}))
            .map_err(|e| PortError::permanent(PORT, format!("alarm report of {device}: {e}")))?;
        self.update_shadow(device, ALARM_SHADOW, payload).await
    }
}
