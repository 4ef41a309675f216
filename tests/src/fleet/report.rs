//! What a fleet run reports, and the process and machine figures it is measured with.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Mode;

/// The figures of one run (the bench prints them as its last line).
#[derive(Clone, Debug, Serialize)]
pub struct FleetReport {
    pub path: &'static str,
    pub mode: Mode,
    pub devices: usize,
    pub cycles: usize,
    pub batch: usize,
    pub concurrency: usize,
    pub sqs_batch: usize,
    pub messages: u64,
    pub samples: u64,
    pub invocations: u64,
    /// Messages delivered again after a failure (each redelivery counted).
    pub redelivered_messages: u64,
    /// Messages that exhausted their attempts (the failure destination / DLQ).
    pub lost_messages: u64,
    pub rejected_messages: u64,
    pub duplicate_samples: u64,
    pub late_samples: u64,
    /// Failures reported by the handler (each redelivered or given up), by error, up to 10 kinds.
    pub failures: BTreeMap<String, u64>,
    pub seconds: f64,
    pub messages_per_s: f64,
    pub samples_per_s: f64,
    pub windows_expected: u64,
    /// Distinct windows with a result on the condition topic.
    pub windows_published: u64,
    /// Windows `done` in DynamoDB (None: not checked).
    pub windows_done_in_dynamodb: Option<u64>,
    /// Devices whose state applied their last window (None: not checked).
    pub devices_complete: Option<u64>,
    pub loss: u64,
    pub duplicate_results: u64,
    /// Results with completeness < 1 or filled samples (a sample lost on the way).
    pub incomplete_results: u64,
    /// Up to 20 (device, window) pairs without a result, for diagnosis.
    pub missing: Vec<(usize, u64)>,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub backlog_latency_ms_p50: f64,
    pub backlog_latency_ms_p99: f64,
    pub backlog_latency_ms_max: f64,
    /// Handler time per invocation.
    pub invocation_ms_p50: f64,
    pub invocation_ms_p99: f64,
    /// Result sink time (IoT publish + shadow update) per window.
    pub result_sink_ms_p50: f64,
    pub wcu_per_sample: f64,
    pub rcu_per_sample: f64,
    pub dynamodb_requests_per_message: f64,
    pub peak_rss_mb: Option<f64>,
    /// RSS after the cold start and the registration, before the storm.
    pub rss_before_storm_mb: Option<f64>,
    pub setup_seconds: f64,
    pub check_seconds: f64,
    /// Where `windows_published` and the duplicates were read.
    pub results_from: &'static str,
    pub build: &'static str,
    pub machine: String,
    /// 1-minute load average at the start and at the end of the storm.
    pub load_average: (f64, f64),
    /// CPU seconds (user + system) of this process during the storm: the handler, the SDK
    /// clients and the load generator.
    pub cpu_seconds: f64,
    pub cpu_ms_per_message: f64,
    /// CPU seconds of the emulators during the storm (found by their ports in /proc), and their
    /// peak RSS: where the time goes on this machine.
    pub dynamodb_local_cpu_seconds: Option<f64>,
    pub moto_cpu_seconds: Option<f64>,
    pub dynamodb_local_peak_rss_mb: Option<f64>,
    pub moto_peak_rss_mb: Option<f64>,
}

impl FleetReport {
    /// No loss, no duplicate, nothing given up, nothing rejected, every window complete.
    pub fn ok(&self) -> bool {
        self.loss == 0
            && self.duplicate_results == 0
            && self.lost_messages == 0
            && self.rejected_messages == 0
            && self.incomplete_results == 0
            && self
                .windows_done_in_dynamodb
                .is_none_or(|d| d == self.windows_expected)
            && self
                .devices_complete
                .is_none_or(|d| d == self.devices as u64)
    }

    pub fn summary(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("not checked".to_string(), |v| v.to_string());
        let mb = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1} MiB"));
        let secs = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1} s"));
        format!(
            "fleet (lambda path, {mode:?}): {devices} devices x {cycles} cycles, {batch} samples/message, \
             concurrency {conc}{sqs}\n\
             \x20 messages {messages} ({samples} samples) in {seconds:.1} s: {mps:.0} messages/s, {sps:.0} samples/s\n\
             \x20 invocations {inv} (handler p50 {ip50:.1} ms, p99 {ip99:.1} ms), redelivered {redel}, given up {lost}, rejected {rej}\n\
             \x20 failures reported by the handler: {fails}; samples seen again {dups}, after their window closed {late}\n\
             \x20 latency hand-off -> result published: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (result sink p50 {rs:.1} ms)\n\
             \x20 latency storm -> result published (backlog): p50 {bp50:.0} ms, p99 {bp99:.0} ms, max {bmax:.0} ms\n\
             \x20 windows expected {exp}, published {pubd} (read from {from}), done in DynamoDB {done}, devices complete {complete}\n\
             \x20 loss {loss}, duplicate results {dup}, incomplete results {inc}\n\
             \x20 DynamoDB: {wcu:.3} WCU and {rcu:.3} RCU per sample, {req:.2} requests per message\n\
             \x20 peak RSS {peak} (before the storm {before}); setup {setup:.1} s, checks {check:.1} s\n\
             \x20 CPU during the storm: this process {cpu:.1} s ({cpum:.2} ms per message), DynamoDB Local {dcpu}, moto {mcpu}; \
             emulators' peak RSS: DynamoDB Local {drss}, moto {mrss}\n\
             \x20 {build} build, {machine}, load average {la0:.2} -> {la1:.2}\n\
             \x20 {verdict}",
            mode = self.mode,
            devices = self.devices,
            cycles = self.cycles,
            batch = self.batch,
            conc = self.concurrency,
            sqs = if self.mode == Mode::Sqs {
                format!(", SQS batches of {}", self.sqs_batch)
            } else {
                String::new()
            },
            messages = self.messages,
            samples = self.samples,
            seconds = self.seconds,
            mps = self.messages_per_s,
            sps = self.samples_per_s,
            inv = self.invocations,
            ip50 = self.invocation_ms_p50,
            ip99 = self.invocation_ms_p99,
            redel = self.redelivered_messages,
            lost = self.lost_messages,
            rej = self.rejected_messages,
            fails = if self.failures.is_empty() {
                "none".to_string()
            } else {
                format!("{:?}", self.failures)
            },
            dups = self.duplicate_samples,
            late = self.late_samples,
            p50 = self.latency_ms_p50,
            p99 = self.latency_ms_p99,
            max = self.latency_ms_max,
            rs = self.result_sink_ms_p50,
            bp50 = self.backlog_latency_ms_p50,
            bp99 = self.backlog_latency_ms_p99,
            bmax = self.backlog_latency_ms_max,
            exp = self.windows_expected,
            pubd = self.windows_published,
            from = self.results_from,
            done = opt(self.windows_done_in_dynamodb),
            complete = opt(self.devices_complete),
            loss = self.loss,
            dup = self.duplicate_results,
            inc = self.incomplete_results,
            wcu = self.wcu_per_sample,
            rcu = self.rcu_per_sample,
            req = self.dynamodb_requests_per_message,
            peak = mb(self.peak_rss_mb),
            before = mb(self.rss_before_storm_mb),
            cpu = self.cpu_seconds,
            cpum = self.cpu_ms_per_message,
            dcpu = secs(self.dynamodb_local_cpu_seconds),
            mcpu = secs(self.moto_cpu_seconds),
            drss = mb(self.dynamodb_local_peak_rss_mb),
            mrss = mb(self.moto_peak_rss_mb),
            setup = self.setup_seconds,
            check = self.check_seconds,
            build = self.build,
            machine = self.machine,
            la0 = self.load_average.0,
            la1 = self.load_average.1,
            verdict = if self.ok() {
                "OK: nothing lost, nothing twice".to_string()
            } else {
                format!("FAILED: missing (device, window), first 20: {:?}", self.missing)
            },
        )
    }
}

/// A line of `/proc/self/status` (`VmHWM`, `VmRSS`), in MiB.
pub fn proc_status_mb(field: &str) -> Option<f64> {
    pid_status_mb("self", field)
}

/// A line of `/proc/<pid>/status`, in MiB.
pub fn pid_status_mb(pid: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// User + system CPU seconds of a process (`/proc/<pid>/stat`, 100 ticks per second).
pub(super) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The DynamoDB Local and moto server processes started for this run (by their ports).
pub(super) fn emulator_pids() -> Option<(String, String)> {
    let e = crate::emulators();
    if !e.is_moto {
        return None;
    }
    let port = |url: &str| url.rsplit(':').next().map(str::to_string);
    let (ddb_port, moto_port) = (port(&e.dynamodb)?, port(&e.moto)?);
    let (mut ddb, mut moto) = (None, None);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        // The `sh` watchdogs hold the same arguments; the emulator is the one that is not sh.
        if args
            .first()
            .is_some_and(|a| a == "sh" || a.ends_with("/sh"))
        {
            continue;
        }
        let has = |flag: &str, value: &str| args.windows(2).any(|w| w[0] == flag && w[1] == value);
        if has("-port", &ddb_port) && args.iter().any(|a| a.contains("DynamoDBLocal")) {
            ddb = Some(pid);
        } else if has("-p", &moto_port) && args.iter().any(|a| a.contains("moto")) {
            moto = Some(pid);
        }
    }
    Some((ddb?, moto?))
}

pub(super) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}
