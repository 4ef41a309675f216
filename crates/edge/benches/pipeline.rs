//! Throughput of the pipeline's parts on the committed hydraulic sample (36 cycles x 60 s of
//! TS1..TS4): `cargo bench -p vigil-edge --bench pipeline` (about a minute after the build).
//!
//! - `parse_window`: parse a message and split it into windows, per sample (one sample per
//!   message as a 1 Hz device sends, and 60-sample batches). Target: >= 1 M samples/s per core.
//! - `score_window`: transforms + ONNX inference of one cooler window. Target: < 1 ms.
//! - `pipeline_memory`: the whole pipeline over in-memory ports, messages/s, for one device and
//!   for 64 devices at once.
//! - `pipeline_redb`: the same over the edge's redb store (synced once per batch, as the edge
//!   does before acknowledging).
//! - `gateway_policy`: the edge gateway's per-packet work after TLS (frame, parse, check against
//!   the thing's policy, forward), per one-sample telemetry PUBLISH of one device's session.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vigil_core::memory::MemoryPorts;
use vigil_core::ports::{DefaultProfileOnly, NoArchive, NoBaselines, NoPause};
use vigil_core::telemetry::{encode_batch, encode_sample, parse_message};
use vigil_core::transform::Matrix;
use vigil_core::window::{assemble, Assembly};
use vigil_core::{CompiledProfile, DeviceId, Message, Pipeline, PipelineConfig, Ports};
use vigil_datasets::models;
use vigil_datasets::Hydraulic;
use vigil_edge as edge;

const PROFILE: &str = "hydraulic-cooler";

struct Fixture {
    profiles: Arc<BTreeMap<String, CompiledProfile>>,
    data: Hydraulic,
    channels: Vec<String>,
}

fn fixture() -> Fixture {
    let profiles = Arc::new(
        edge::load_profiles_named(&models::models_dir(None), &[PROFILE])
            .expect("the hydraulic-cooler profile (ONNX Runtime: make setup)"),
    );
    let channels = profiles[PROFILE].profile.channels.clone();
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    let data = Hydraulic::load(
        &models::repo_root().join("models/samples/hydraulic"),
        &names,
    )
    .expect("the committed sample");
    Fixture {
        profiles,
        data,
        channels,
    }
}

/// Every cycle of the sample, as messages of `per_message` samples.
fn payloads(f: &Fixture, per_message: usize) -> Vec<Vec<u8>> {
    let samples: Vec<_> = (0..f.data.cycles())
        .flat_map(|c| f.data.cycle_samples(c, 1_700_000_000_000))
        .collect();
    samples
        .chunks(per_message)
        .map(|chunk| {
            if per_message == 1 {
                encode_sample(&chunk[0], &f.channels)
            } else {
                encode_batch(chunk, &f.channels)
            }
        })
        .collect()
}

fn parse_window(c: &mut Criterion, f: &Fixture) {
    let spec = &f.profiles[PROFILE].profile.window;
    let mut group = c.benchmark_group("parse_window");
    for per_message in [1usize, 60] {
        let messages = payloads(f, per_message);
        let samples = (f.data.cycles() * 60) as u64;
        group.throughput(Throughput::Elements(samples));
        group.bench_with_input(
            BenchmarkId::new("samples_per_message", per_message),
            &messages,
            |b, messages| {
                b.iter(|| {
                    let mut windows = 0usize;
                    for m in messages {
                        let s = parse_message(m, &f.channels).expect("valid");
                        windows += spec.split(&s).len();
                    }
                    windows
                })
            },
        );
    }
    group.finish();
}

fn score_window(c: &mut Criterion, f: &Fixture) {
    let profile = &f.profiles[PROFILE];
    let spec = &profile.profile.window;
    // Cycle 20 (cooler at 20 %) is window 20: seqs 1200..1260.
    let samples = f.data.cycle_samples(20, 0);
    let last = samples.last().expect("60 samples").seq;
    let matrix = match assemble(spec, 20, &samples, f.channels.len(), last) {
        Assembly::Ready { matrix, .. } => matrix,
        other => panic!("window not ready: {other:?}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("score_window");
    group.throughput(Throughput::Elements(1));
    group.bench_function("transforms_and_onnx", |b| {
        b.iter(|| {
            let features: Matrix = profile.chain.apply(matrix.clone());
            let mut baseline = None;
            rt.block_on(profile.scorer.score(&features, &mut baseline))
                .expect("scores")
                .label
        })
    });
    group.finish();
}

/// Messages of `devices` devices, `cycles` cycles each, one sample per message, in arrival
/// order (devices interleaved), cut into batches of `batch`.
fn device_batches(f: &Fixture, devices: usize, cycles: usize, batch: usize) -> Vec<Vec<Message>> {
    let ids: Vec<DeviceId> = (0..devices)
        .map(|d| DeviceId::new(format!("rig-{d:04}")).unwrap())
        .collect();
    let per_device: Vec<Vec<u8>> = (0..cycles)
        .flat_map(|c| f.data.cycle_samples(c % f.data.cycles(), 0))
        .map(|s| encode_sample(&s, &f.channels))
        .collect();
    let mut all = Vec::with_capacity(devices * per_device.len());
    for (i, payload) in per_device.iter().enumerate() {
        for (d, id) in ids.iter().enumerate() {
            all.push(Message {
                id: format!("{d}-{i}"),
                device: id.clone(),
                payload: payload.clone(),
            });
        }
    }
    all.chunks(batch).map(<[Message]>::to_vec).collect()
}

fn config() -> PipelineConfig {
    PipelineConfig {
        default_profile: PROFILE.into(),
        ..PipelineConfig::default()
    }
}

fn pipeline_memory(c: &mut Criterion, f: &Fixture) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("pipeline_memory");
    for (devices, cycles) in [(1usize, 36usize), (64, 2)] {
        let batches = device_batches(f, devices, cycles, 256);
        let n: usize = batches.iter().map(Vec::len).sum();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::new("devices", devices),
            &batches,
            |b, batches| {
                b.iter(|| {
                    let ports = MemoryPorts::new();
                    let pipeline = Pipeline::new(&f.profiles, ports.ports(), config()).unwrap();
                    rt.block_on(async {
                        for batch in batches {
                            pipeline.process(batch, 0).await;
                        }
                    });
                    assert_eq!(ports.recorder.results().len(), devices * cycles);
                })
            },
        );
    }
    group.finish();
}

fn pipeline_redb(c: &mut Criterion, f: &Fixture) {
    use vigil_edge::store::{Durability, EdgeStore};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("pipeline_redb");
    for (devices, cycles) in [(1usize, 36usize), (64, 2)] {
        let batches = device_batches(f, devices, cycles, 256);
        let n: usize = batches.iter().map(Vec::len).sum();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::new("devices", devices),
            &batches,
            |b, batches| {
                b.iter(|| {
                    let dir = tempfile::tempdir().unwrap();
                    let store = EdgeStore::open_dir(dir.path(), Durability::OnFlush).unwrap();
                    let memory = MemoryPorts::new();
                    let ports = Ports {
                        windows: &store,
                        states: &store,
                        registry: &DefaultProfileOnly,
                        baselines: &NoBaselines,
                        results: &memory.recorder,
                        alerts: &memory.recorder,
                        archive: &NoArchive,
                        rejects: &memory.recorder,
                        pause: &NoPause,
                    };
                    let pipeline = Pipeline::new(&f.profiles, ports, config()).unwrap();
                    rt.block_on(async {
                        for batch in batches {
                            pipeline.process(batch, 0).await;
                            store.flush().unwrap();
                        }
                    });
                    assert_eq!(memory.recorder.results().len(), devices * cycles);
                })
            },
        );
    }
    group.finish();
}

fn gateway_policy(c: &mut Criterion, f: &Fixture) {
    use rumqttc::{Connect, Packet, Publish, QoS};
    use vigil_edge::gateway::{forward_stream, DevicePolicy};
    use vigil_mqtt::MAX_PACKET_BYTES;

    let thing = DeviceId::new("rig-001").unwrap();
    let mut session = bytes::BytesMut::new();
    Packet::Connect(Connect::new(thing.as_str()))
        .write(&mut session, MAX_PACKET_BYTES)
        .unwrap();
    let messages = payloads(f, 1);
    for (i, payload) in messages.iter().enumerate() {
        let mut publish = Publish::new(
            vigil_core::telemetry::telemetry_topic(&thing),
            QoS::AtLeastOnce,
            payload.clone(),
        );
        publish.pkid = (i % 65_535 + 1) as u16;
        Packet::Publish(publish)
            .write(&mut session, MAX_PACKET_BYTES)
            .unwrap();
    }
    let policy = DevicePolicy::new(&thing);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("gateway_policy");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("one_sample_publishes", |b| {
        b.iter(|| {
            let mut forwarded = Vec::with_capacity(session.len());
            rt.block_on(forward_stream(&session[..], &mut forwarded, &policy))
                .unwrap();
            assert_eq!(forwarded.len(), session.len());
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    parse_window(c, &f);
    score_window(c, &f);
    pipeline_memory(c, &f);
    pipeline_redb(c, &f);
    gateway_policy(c, &f);
}

criterion_group! {
    name = pipeline;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(pipeline);
