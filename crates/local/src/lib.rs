//! `vigil local`: the cloud path as deployed, on one machine, with no AWS account. This crate
//! is the AWS IoT Core stand-in around the ingest Lambda: the topic rule as the Terraform writes
//! it ([`rule`]), its asynchronous hand-off to the function ([`invoke`]), and the IoT data plane
//! the function publishes verdicts and shadows through ([`dataplane`]); in the batched modes the
//! rule's SQS or Kinesis action and the event source mapping that polls it ([`mapping`]).
//! docs/local.md tells what runs and what differs from real AWS.

pub mod awsjson;
pub mod bridge;
pub mod dataplane;
pub mod invoke;
pub mod lambda;
pub mod mapping;
pub mod rule;
pub mod stack;
pub mod terraform;
