//! Closing a window: reading it, scoring it, sending what it produced and committing the close
//! in the device state (see [`Pipeline::close_window`] for the round trips).

use super::*;
use crate::ports::PendingClose;
use crate::scorer::Contribution;

impl<'a> Pipeline<'a> {
    /// Closes the window if it is ready. Critical path, three round trips. Commit-first stores
    /// (DynamoDB): (1) its samples and the device state, together; (2) the device state saved
    /// with the window marked closed and the close pending — the commit that makes the close
    /// happen once; (3) the result (topic and shadow), the alerts and the archive, together.
    /// Claiming stores (memory, the edge): (1) samples, state and — when this batch holds the
    /// window's last chunk — the claim, which stores that chunk; (2) the effects; (3) the commit.
    pub(super) async fn close_window(
        &self,
        ctx: &mut Closing<'_, '_>,
        window: WindowId,
        mut pending: Option<Chunk>,
    ) -> Result<Closed, PortError> {
        let (stream_key, profile, now_ms) = (ctx.stream_key, ctx.profile, ctx.now_ms);
        let spec = &profile.profile.window;
        let lease_ms = self.config.lease_ms;
        let windows = self.ports.windows;
        // Commit-first stores (see `WindowStore::commits_first`): no claim, the commit is the
        // close's one write and comes before its effects.
        let commit_first = windows.commits_first();
        let early = pending.is_some() && windows.claims_before_load() && !commit_first;
        let hints = &self.config.close_hints;
        // Armed before reading, so that a message completing the window after our read sees
        // the hint (one before it is in what we read).
        hints.arm(stream_key, window);
        if pending.is_none() {
            // A window checked again (deadline, hint): usually closed already, which the state
            // tells without reading the window.
            if ctx.state.is_none() {
                *ctx.state = Some(self.ports.states.load(stream_key).await?);
            }
            if ctx
                .state
                .as_ref()
                .is_some_and(|s| s.value.is_closed(window))
            {
                if let Some(own) = self.own_commit(ctx, window) {
                    let samples = windows.load(stream_key, window).await?;
                    return self.resend(ctx, own, samples, None).await;
                }
                self.seen_closed(ctx, window);
                return Ok(Closed::NotReady);
            }
        }
        let mut early_claim = None;
        let mut reloaded = false;
        let mut straggled = 0;
        let (samples, assembly) = loop {
            let need_state = ctx.state.is_none();
            let claim_now = early && !reloaded;
            let (stored, loaded, claimed) = futures_util::future::try_join3(
                windows.load(stream_key, window),
                async {
                    if need_state {
                        self.ports.states.load(stream_key).await.map(Some)
                    } else {
                        Ok(None)
                    }
                },
                async {
                    if claim_now {
                        windows
                            .claim_with(stream_key, window, now_ms, lease_ms, pending.as_ref())
                            .await
                            .map(Some)
                    } else {
                        Ok(None)
                    }
                },
            )
            .await?;
            if let Some(l) = loaded {
                *ctx.state = Some(l);
            }
            let mut stored_by_claim = None;
            if let Some((claim, stored)) = claimed {
                early_claim = Some(claim);
                stored_by_claim = stored;
            }
            let closed_already = ctx
                .state
                .as_ref()
                .is_some_and(|s| s.value.is_closed(window))
                || early_claim == Some(Claim::Done);
            if closed_already {
                if let Some(own) = self.own_commit(ctx, window) {
                    let mut samples = stored;
                    let chunk = pending.take();
                    if let Some(chunk) = &chunk {
                        samples.extend(chunk.samples.iter().cloned());
                        dedup_by_seq(&mut samples);
                    }
                    return self.resend(ctx, own, samples, chunk).await;
                }
                self.seen_closed(ctx, window);
                if let Some(chunk) = &pending {
                    ctx.seqs.late(window, chunk);
                }
                return Ok(Closed::NotReady);
            }
            let mut samples = stored;
            if let Some(new) = stored_by_claim {
                // Ours is stored with the claim (and may be in what was read).
                if let Some(chunk) = pending.take() {
                    if new {
                        ctx.seqs.stored(window, &chunk);
                    } else {
                        ctx.seqs.duplicate(window, &chunk);
                    }
                    samples.extend(chunk.samples);
                    dedup_by_seq(&mut samples);
                }
            } else if let Some(chunk) = &pending {
                let known: BTreeSet<u64> = samples.iter().map(|s| s.seq).collect();
                if chunk.samples.iter().all(|s| known.contains(&s.seq)) {
                    // A redelivery of samples already stored.
                    ctx.seqs.duplicate(window, chunk);
                    pending = None;
                } else {
                    samples.extend(chunk.samples.iter().cloned());
                    dedup_by_seq(&mut samples);
                }
            }
            if early_claim == Some(Claim::Busy) {
                // Someone else holds the window: our samples must not wait for it to be ours.
                self.store_pending(ctx, window, pending.take()).await?;
            }
            let channels = profile.profile.channels.len();
            let assembly = assemble(spec, window, &samples, channels, ctx.high_water);
            if !samples.is_empty() && !matches!(assembly, Assembly::Pending { .. }) {
                let present = samples
                    .iter()
                    .filter(|s| s.seq >= spec.start(window) && s.seq < spec.end(window))
                    .count();
                // Closing incomplete at a deadline, with no claim to make others wait: samples
                // of it that concurrent deliveries are storing would be late. Read again after
                // a short pause; while its last seq is missing, through every pause: the
                // delivery holding it stores nothing until it commits (rare: windows with
                // holes, and a last message lost costs the pauses once).
                let last_missing = !samples.iter().any(|s| s.seq == spec.end(window) - 1);
                let wait = if !commit_first || present == spec.size as usize {
                    None
                } else if last_missing || straggled == 0 {
                    self.config.busy_waits_ms.get(straggled)
                } else {
                    None
                };
                if let Some(&ms) = wait {
                    straggled += 1;
                    self.ports.pause.pause(ms).await;
                    *ctx.state = None;
                    continue;
                }
                break (samples, assembly);
            }
            // Not ready. Our chunk was stored only now (with the claim, or appended below),
            // after we read: a message completing the window meanwhile may have read before it
            // was there, so read once more before giving up.
            let stored_now = claimed.is_some() || pending.is_some();
            self.store_pending(ctx, window, pending.take()).await?;
            if stored_now && !reloaded {
                reloaded = true;
                continue;
            }
            if early_claim == Some(Claim::Granted) {
                windows
                    .release(stream_key, window, now_ms + lease_ms)
                    .await?;
            }
            return Ok(Closed::NotReady);
        };
        let (mut samples, mut assembly) = (samples, assembly);
        if early_claim != Some(Claim::Granted) && !commit_first {
            let mut waits = self.config.busy_waits_ms.iter();
            let mut answer = early_claim.map(|c| (c, None));
            let mut waited = false;
            loop {
                let (claim, stored) = match answer.take() {
                    Some(c) => c,
                    None => {
                        windows
                            .claim_with(stream_key, window, now_ms, lease_ms, pending.as_ref())
                            .await?
                    }
                };
                if let (Some(new), Some(chunk)) = (stored, pending.take()) {
                    if new {
                        ctx.seqs.stored(window, &chunk);
                    } else {
                        ctx.seqs.duplicate(window, &chunk);
                    }
                }
                match claim {
                    Claim::Granted => {
                        if waited {
                            // What we read is older than the wait: samples may have come.
                            samples = windows.load(stream_key, window).await?;
                            if let Some(chunk) = &pending {
                                samples.extend(chunk.samples.iter().cloned());
                                dedup_by_seq(&mut samples);
                            }
                            let channels = profile.profile.channels.len();
                            assembly = assemble(spec, window, &samples, channels, ctx.high_water);
                            if matches!(assembly, Assembly::Pending { .. }) {
                                windows
                                    .release(stream_key, window, now_ms + lease_ms)
                                    .await?;
                                return Ok(Closed::NotReady);
                            }
                        }
                        break;
                    }
                    Claim::Busy => match waits.next() {
                        Some(&ms) => {
                            waited = true;
                            self.ports.pause.pause(ms).await
                        }
                        None => {
                            self.store_pending(ctx, window, pending).await?;
                            ctx.report.counters.windows_busy += 1;
                            return Ok(Closed::Busy);
                        }
                    },
                    Claim::Done | Claim::Missing => {
                        hints.closed(stream_key, window);
                        if let Some(chunk) = &pending {
                            ctx.seqs.late(window, chunk);
                        }
                        return Ok(Closed::NotReady);
                    }
                }
            }
        }

        let present = samples
            .iter()
            .filter(|s| s.seq >= spec.start(window) && s.seq < spec.end(window))
            .count();
        let mut result = WindowResult {
            device: stream_key.device.clone(),
            profile: profile.profile.name.clone(),
            window,
            seq_start: spec.start(window),
            seq_end: spec.end(window),
            ts_start: samples.first().map_or(0, |s| s.ts),
            ts_end: samples.last().map_or(0, |s| s.ts),
            status: ResultStatus::Incomplete,
            label: "incomplete".into(),
            labels: profile.scorer.labels().to_vec(),
            probabilities: vec![],
            anomaly_score: None,
            completeness: present as f32 / spec.size as f32,
            filled: 0,
            source: "none".into(),
            model_version: String::new(),
            scored_at_ms: now_ms,
            alert: None,
            contributions: Vec::new(),
            candidate: None,
        };
        let mut closed = ClosedWindow {
            result: result.clone(),
            channels: profile.profile.channels.clone(),
            samples,
        };
        let (features, published) = match assembly {
            Assembly::Ready { matrix, filled } => {
                result.filled = filled;
                result.status = ResultStatus::Scored;
                let features = profile.chain.apply(matrix);
                (
                    Some(features),
                    self.ports.baselines.latest(stream_key).await?,
                )
            }
            _ => {
                result.model_version = profile.scorer.version();
                (None, None)
            }
        };

        // Whether the result went out (a conflict on the save redoes the state, not the send).
        let mut sent = false;
        let mut notified: Vec<AlertEvent> = Vec::new();
        let mut stored = ctx.state.take().unwrap_or_default();
        let committer = commit_first.then(|| ctx.carriers.committer(spec, window));
        loop {
            if stored.value.is_closed(window) {
                // Closed by someone else meanwhile (their lease ran out under us, or, without
                // leases, their commit landed first): our unstored samples came too late.
                *ctx.state = Some(stored);
                self.seen_closed(ctx, window);
                if let Some(chunk) = &pending {
                    ctx.seqs.late(window, chunk);
                }
                return Ok(Closed::NotReady);
            }
            let mut state = stored.value.clone();
            // Notifications an older version left in the outbox go out with this window.
            let mut alerts: Vec<AlertEvent> = std::mem::take(&mut state.outbox);
            if let Some(features) = &features {
                if let Some(b) = &published {
                    if state
                        .baseline
                        .as_ref()
                        .is_none_or(|cur| cur.version != b.version)
                    {
                        state.baseline = Some(b.clone());
                    }
                }
                let fresh = state.applied_window.is_none_or(|w| window > w);
                // A window out of order is scored against a copy: it must not move the baseline.
                let mut baseline = state.baseline.clone();
                let score = self
                    .score(
                        profile,
                        features,
                        &mut baseline,
                        stream_key,
                        window,
                        result.ts_end,
                    )
                    .await?;
                result.label = score.label.clone();
                result.probabilities = score.probabilities.clone();
                result.anomaly_score = score.anomaly_score;
                result.source = score.source.clone();
                result.model_version = score.model_version.clone();
                result.contributions = score.contributions.clone();
                Contribution::name_columns(&mut result.contributions, &profile.profile.channels);
                result.candidate = score.candidate.clone();
                if fresh {
                    state.baseline = baseline;
                    let transition = alert::apply(
                        &profile.profile.alert,
                        &mut state.alert,
                        &score.label,
                        result.ts_end,
                    );
                    state.applied_window = Some(window);
                    state.last_label = Some(score.label.clone());
                    // Operators' alarms decide which transitions are told (snoozed,
                    // disabled) and add escalations and reminders.
                    for n in alarm::on_window(
                        &profile.profile.alert,
                        &mut state.alarms,
                        transition.as_ref(),
                        now_ms,
                    ) {
                        let mut event = self.alert_event(stream_key, window, n.transition, &result);
                        event.alarm = Some(n.note);
                        alerts.push(event);
                    }
                }
                // Out of order: reported, not applied.
                result.alert = state.alert.active.clone();
            }
            state.mark_closed(window);
            closed.result = result.clone();
            alerts.retain(|a| !notified.contains(a));
            if let Some(by) = &committer {
                // Commit first: the save decides who closes the window (a conflict rereads and
                // recomputes, and stops if the window was closed meanwhile), then only the
                // winner sends what it committed. A failure after the save fails the message;
                // its retry finds `pending` in its own name and sends again (`resend`).
                // The close this commit replaces as the pending one: its effects are checked
                // below, since its delivery's retry will no longer find its own commit.
                let previous = stored.value.pending.clone().filter(|p| p.window != window);
                state.pending = Some(PendingClose::new(by, &result, &alerts));
                if self.commit(ctx, state, stored.version).await? {
                    if let Some(chunk) = pending.take() {
                        ctx.seqs.stored(window, &chunk);
                    }
                    futures_util::future::try_join(
                        self.carry_forward(stream_key, profile, previous, now_ms),
                        self.effects_with_archive(&closed, &alerts),
                    )
                    .await?;
                    notified = alerts;
                    break;
                }
                stored = self.ports.states.load(stream_key).await?;
                continue;
            }
            // Everything the close sends, before the commit: a crash or a failure before the
            // save leaves the window claimed and not closed, and the retry after the lease
            // sends again (at-least-once, like SNS itself); after the save, nothing is sent
            // again.
            let publish = async {
                if sent {
                    // Redone after a conflict: the result went out once (its `alert` may lag
                    // a window closed concurrently); only new alerts are sent.
                    Ok(())
                } else {
                    self.effects(&closed).await
                }
            };
            futures_util::future::try_join(publish, self.notify(&alerts)).await?;
            sent = true;
            notified.extend(alerts.iter().cloned());
            if self.commit(ctx, state, stored.version).await? {
                break;
            }
            stored = self.ports.states.load(stream_key).await?;
        }
        self.finished(ctx, result, notified).await
    }

    /// Saves the device state the close made over version `expected` (the conditional write
    /// that decides who closes); when it lands, it is the batch's state from then on.
    async fn commit(
        &self,
        ctx: &mut Closing<'_, '_>,
        state: DeviceState,
        expected: u64,
    ) -> Result<bool, PortError> {
        let saved = self
            .ports
            .states
            .save(ctx.stream_key, &state, expected)
            .await?;
        if saved {
            *ctx.state = Some(Versioned {
                value: state,
                version: expected + 1,
            });
        }
        Ok(saved)
    }

    /// Remembers in this process that the window the device state says closed needs nothing
    /// more: unless (commit-first) its commit is still the pending one, whose committer's
    /// retry may come through this process to send its effects.
    fn seen_closed(&self, ctx: &Closing<'_, '_>, window: WindowId) {
        let pending_here = self.ports.windows.commits_first()
            && ctx
                .state
                .as_ref()
                .and_then(|s| s.value.pending.as_ref())
                .is_some_and(|p| p.window == window);
        if !pending_here {
            self.config.close_hints.closed(ctx.stream_key, window);
        }
    }

    /// The close of `window` this batch committed itself, if the device state says so: the
    /// batch is a retry of the delivery that committed it, whose effects may not have gone out.
    fn own_commit(&self, ctx: &Closing<'_, '_>, window: WindowId) -> Option<PendingClose> {
        if !self.ports.windows.commits_first() {
            return None;
        }
        let pending = ctx.state.as_ref()?.value.pending.as_ref()?;
        let by = ctx.carriers.committer(&ctx.profile.profile.window, window);
        (pending.window == window && pending.committed_by(&by)).then(|| pending.clone())
    }

    /// Sends again what a commit of this delivery recorded (result, archive, alerts): each is
    /// idempotent or at-least-once, as a first send that failed half-way needs. `unstored` is
    /// this batch's chunk of the window that the commit stood for.
    async fn resend(
        &self,
        ctx: &mut Closing<'_, '_>,
        own: PendingClose,
        samples: Vec<Sample>,
        unstored: Option<Chunk>,
    ) -> Result<Closed, PortError> {
        let window = own.window;
        let result = own.result(ctx.stream_key, ctx.profile.scorer.labels());
        let alerts = own.alerts(&result);
        if self.ports.archive.contains(&result).await? {
            // Archived: everything went out (a duplicate of the committing delivery).
            self.config.close_hints.closed(ctx.stream_key, window);
            if let Some(chunk) = &unstored {
                ctx.seqs.late(window, chunk);
            }
            return Ok(Closed::NotReady);
        }
        if let Some(chunk) = &unstored {
            ctx.seqs.stored(window, chunk);
        }
        let closed = ClosedWindow {
            result,
            channels: ctx.profile.profile.channels.clone(),
            samples,
        };
        self.effects_with_archive(&closed, &alerts).await?;
        self.finished(ctx, closed.result, alerts).await
    }

    /// The previous commit-first close of the device, whose pending record the commit just
    /// made replaced: when its archive (withdrawn when an effect failed) is missing, its effects may not have gone
    /// out — its delivery failed after the commit and its retry, if any, finds a newer commit,
    /// not its own — so they go out again now (at-least-once). Only once its committer is
    /// certainly gone (committed more than a lease ago, the lease outliving an invocation):
    /// before that it may still be sending them. Its samples are read again; the committing
    /// message's own chunk was never stored, so that archive lacks it.
    async fn carry_forward(
        &self,
        stream_key: &StreamKey,
        profile: &CompiledProfile,
        previous: Option<PendingClose>,
        now_ms: u64,
    ) -> Result<(), PortError> {
        let Some(previous) = previous else {
            return Ok(());
        };
        let result = previous.result(stream_key, profile.scorer.labels());
        let committer_gone = now_ms >= result.scored_at_ms.saturating_add(self.config.lease_ms);
        if !committer_gone || !self.ports.archive.tells_contents() {
            return Ok(());
        }
        if self.ports.archive.contains(&result).await? {
            return Ok(());
        }
        let alerts = previous.alerts(&result);
        let closed = ClosedWindow {
            samples: self.ports.windows.load(stream_key, previous.window).await?,
            result,
            channels: profile.profile.channels.clone(),
        };
        self.effects_with_archive(&closed, &alerts).await
    }

    /// A commit-first close's effects: the result, the alerts and the archive, all together
    /// (one round trip). An archived window tells a retry that the rest went out (see
    /// `resend`), so when the result or an alert failed while the archive was written, the
    /// archive is withdrawn before the failure is reported: the retry, or the next close's
    /// carry-forward, then finds it missing and sends again. What this cannot cover is a
    /// process that dies between the archive's write and a failed effect (docs/aws.md).
    async fn effects_with_archive(
        &self,
        closed: &ClosedWindow,
        alerts: &[AlertEvent],
    ) -> Result<(), PortError> {
        let (sent, archived) = futures_util::future::join(
            futures_util::future::try_join(
                self.ports.results.publish(&closed.result),
                self.notify(alerts),
            ),
            self.ports.archive.archive(closed),
        )
        .await;
        match (sent, archived) {
            (Ok(_), Ok(())) => Ok(()),
            (Err(failed), Ok(())) => {
                if let Err(undo) = self.ports.archive.withdraw(&closed.result).await {
                    return Err(PortError {
                        message: format!(
                            "{}; and the archive could not be withdrawn ({}): a retry will take \
                             the window's effects as sent",
                            failed.message, undo.message
                        ),
                        ..failed
                    });
                }
                Err(failed)
            }
            (_, Err(failed)) => Err(failed),
        }
    }

    /// Counts and reports a close whose effects went out, and lets the store mark it done.
    async fn finished(
        &self,
        ctx: &mut Closing<'_, '_>,
        result: WindowResult,
        notified: Vec<AlertEvent>,
    ) -> Result<Closed, PortError> {
        if result.status == ResultStatus::Scored {
            ctx.report.counters.windows_scored += 1;
        } else {
            ctx.report.counters.windows_incomplete += 1;
        }
        ctx.report.counters.alerts += notified.len() as u64;
        ctx.report.alerts.extend(notified);
        // Stores that keep their own done mark (memory, the edge) set it; DynamoDB relies on
        // the state saved with the close.
        let outcome = WindowOutcome {
            label: result.label.clone(),
            finished_ms: ctx.now_ms,
        };
        self.ports
            .windows
            .finish(ctx.stream_key, result.window, &outcome)
            .await?;
        self.config
            .close_hints
            .closed(ctx.stream_key, result.window);
        ctx.report.results.push(result);
        Ok(Closed::Yes)
    }

    /// Appends a chunk that was held back for a claim that did not happen.
    pub(super) async fn store_pending(
        &self,
        ctx: &mut Closing<'_, '_>,
        window: WindowId,
        pending: Option<Chunk>,
    ) -> Result<(), PortError> {
        if let Some(chunk) = pending {
            let outcome = self
                .ports
                .windows
                .append(ctx.stream_key, window, &chunk, ctx.now_ms)
                .await?;
            ctx.seqs.classify(window, &outcome, &chunk);
        }
        Ok(())
    }

    pub(super) async fn notify(&self, alerts: &[AlertEvent]) -> Result<(), PortError> {
        futures_util::future::try_join_all(alerts.iter().map(|a| self.ports.alerts.notify(a)))
            .await?;
        Ok(())
    }

    /// The result to the device and the window to the archive: independent, so together.
    pub(super) async fn effects(&self, closed: &ClosedWindow) -> Result<(), PortError> {
        futures_util::future::try_join(
            self.ports.results.publish(&closed.result),
            self.ports.archive.archive(closed),
        )
        .await?;
        Ok(())
    }

    pub(super) async fn score(
        &self,
        profile: &CompiledProfile,
        features: &crate::transform::Matrix,
        baseline: &mut Option<crate::scorer::Baseline>,
        stream_key: &StreamKey,
        window: WindowId,
        ts_end: u64,
    ) -> Result<crate::scorer::Score, PortError> {
        profile
            .scorer
            .score_at(features, baseline, ts_end)
            .await
            .map_err(|e| PortError {
                port: "scorer",
                message: format!("window {window} of {}: {e}", stream_key.device),
                retryable: e.is_retryable(),
            })
    }

    pub(super) fn alert_event(
        &self,
        stream_key: &StreamKey,
        window: WindowId,
        transition: alert::Transition,
        result: &WindowResult,
    ) -> AlertEvent {
        AlertEvent {
            device: stream_key.device.clone(),
            profile: stream_key.profile.clone(),
            window,
            transition,
            ts: result.ts_end,
            model_version: result.model_version.clone(),
            alarm: None,
            contributions: result.contributions.clone(),
        }
    }
}

/// One device's batch while its windows are being closed.
pub(super) struct Closing<'c, 'r> {
    pub(super) stream_key: &'c StreamKey,
    pub(super) profile: &'c CompiledProfile,
    pub(super) high_water: u64,
    pub(super) now_ms: u64,
    pub(super) carriers: &'c Carriers,
    pub(super) state: &'c mut Option<Versioned<DeviceState>>,
    pub(super) seqs: &'c mut Seqs,
    pub(super) report: &'r mut DeviceReport,
}

/// What a close attempt found.
pub(super) enum Closed {
    Yes,
    NotReady,
    Busy,
}
