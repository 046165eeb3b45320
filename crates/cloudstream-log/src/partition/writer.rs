//! The single writer of a partition: a thread that owns the active segment and turns the
//! appends waiting in its queue into one write round and (with `sync = always`) one fdatasync.
//!
//! This is group commit: while one fdatasync runs, new appends queue up, and the next round
//! makes all of them durable at once, so many concurrent writers share the cost of a sync.
//! Records become visible to readers, and appends are acknowledged, only once they are durable
//! by the sync policy. After a failed write or sync the partition is poisoned (fail-stop).
//!
//! Pre-zeroing: an fdatasync that makes a file longer must also commit the file's new size
//! through the filesystem's journal, which costs more than the data (on ext4, a journal commit
//! by another kernel thread and a second flush). With `sync = always` and small rounds (single
//! events under load), the writer therefore writes zeros [`ZERO_AHEAD_BYTES`] past the end of
//! what it wrote, so the next rounds overwrite bytes the file already has and their syncs
//! change only data — PostgreSQL pre-zeroes its WAL segments for the same reason. Large rounds
//! are not pre-zeroed: they would write every byte twice for a saving they hardly see. The
//! zeros are cut off when the segment is sealed or closed, and recovery cuts an all-zero tail
//! as what it is, space never written.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::IoContext;
use crate::format::{EncodedBatch, SEGMENT_HEADER_LEN};
use crate::index::{SegmentSummary, OFFSET_INDEX_MAGIC, TIME_INDEX_MAGIC};
use crate::partition::recovery::create_segment;
use crate::partition::{AppendResult, PartitionShared};
use crate::segment::{segment_paths, Segment};
use crate::storage::StorageFile;
use crate::{LogError, Result, SyncPolicy};

/// Called once with the outcome of an append.
pub type Completion = Box<dyn FnOnce(Result<AppendResult>) + Send>;

/// Most bytes written in one round before it is synced and acknowledged.
const MAX_ROUND_BYTES: usize = 64 * 1024 * 1024;

/// Zeros written past the end of a small round's write (see the module docs).
const ZERO_AHEAD_BYTES: usize = 1024 * 1024;

/// Rounds averaging more bytes than this are not pre-zeroed.
const ZERO_AHEAD_MAX_ROUND_BYTES: u64 = 16 * 1024;

pub(crate) enum Command {
    Append(EncodedBatch, Completion),
    Retain {
        horizon_ms: i64,
        done: Sender<Result<usize>>,
    },
    Close(Sender<Result<()>>),
}

pub(crate) struct Writer {
    shared: Arc<PartitionShared>,
    active: Arc<Segment>,
    /// The active segment's file.
    file: Arc<dyn StorageFile>,
    write_pos: u64,
    durable_pos: u64,
    next_offset: u64,
    last_append_ms: i64,
    first_append_ms: Option<i64>,
    written_since_open: bool,
    pending: Vec<(Completion, AppendResult)>,
    last_sync: Instant,
    /// End of the zeros written ahead of `write_pos` in the active segment (0: none).
    zeroed_to: u64,
    /// Moving average of the bytes of a round, which decides whether to pre-zero.
    round_bytes_avg: u64,
    /// Where the last durability marker was written (see [`Writer::mark_durable`]).
    marked_at: u64,
}

impl Writer {
    pub(crate) fn new(shared: Arc<PartitionShared>, active: Arc<Segment>) -> Result<Self> {
        let file = active.file()?;
        let (write_pos, next_offset, max_append, first) = {
            let s = active.state();
            (
                s.visible_len,
                s.next_offset,
                s.max_append_ms,
                s.first_append_ms,
            )
        };
        Ok(Writer {
            shared,
            active,
            file,
            write_pos,
            durable_pos: write_pos,
            next_offset,
            last_append_ms: max_append,
            first_append_ms: first,
            written_since_open: false,
            pending: Vec::new(),
            last_sync: Instant::now(),
            zeroed_to: 0,
            round_bytes_avg: 0,
            marked_at: 0,
        })
    }

    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        loop {
            let first = match self.shared.config.sync {
                SyncPolicy::Interval(every) if self.write_pos > self.durable_pos => {
                    let wait = every.saturating_sub(self.last_sync.elapsed());
                    match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
                        Ok(cmd) => cmd,
                        Err(RecvTimeoutError::Timeout) => {
                            self.background_sync();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match rx.recv() {
                    Ok(cmd) => cmd,
                    Err(_) => break,
                },
            };
            let mut round_bytes = 0;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append(batch, done) => {
                        round_bytes += batch.frame_len();
                        self.append(batch, done);
                    }
                    Command::Retain { horizon_ms, done } => {
                        self.finish_round();
                        let _ = done.send(self.retain(horizon_ms));
                    }
                    Command::Close(done) => {
                        self.finish_round();
                        let _ = done.send(self.close());
                        return;
                    }
                }
                if round_bytes < MAX_ROUND_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            self.round_bytes_avg = (self.round_bytes_avg * 7 + round_bytes as u64) / 8;
            self.finish_round();
        }
        let _ = self.close();
    }

    fn poisoned(&self) -> Option<LogError> {
        self.shared.poisoned().map(LogError::Poisoned)
    }

    fn poison(&self, err: &LogError) {
        tracing::error!(error = %err, "partition stops acknowledging writes (fail-stop)");
        self.shared.poison(err.to_string());
    }

    fn append(&mut self, mut batch: EncodedBatch, done: Completion) {
        if let Some(err) = self.poisoned() {
            return done(Err(err));
        }
        if let Err(err) = self.maybe_roll(batch.frame_len() as u64) {
            self.poison(&err);
            return done(Err(err));
        }
        let now = self.shared.config.clock.now_ms().max(self.last_append_ms);
        let base_offset = self.next_offset;
        let pos = self.write_pos;
        let count = batch.count();
        let bytes = batch.seal(base_offset, now, self.durable_pos);
        if let Err(err) = self.file.write_all_at(bytes, pos).at(&self.active.path) {
            self.poison(&err);
            return done(Err(err));
        }
        self.write_pos += bytes.len() as u64;
        self.zero_ahead();
        self.next_offset += u64::from(count);
        self.last_append_ms = now;
        self.first_append_ms.get_or_insert(now);
        self.written_since_open = true;
        {
            let interval = self.shared.config.index_interval;
            let mut s = self.active.state_mut();
            s.offsets.maybe_add(base_offset as i64, pos, interval);
            s.times.maybe_add(now, pos, interval);
        }
        let result = AppendResult {
            base_offset,
            count,
            append_time_ms: now,
        };
        self.pending.push((done, result));
    }

    /// Syncs (by policy), publishes and acknowledges the appends of this round.
    fn finish_round(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let synced = match self.shared.config.sync {
            _ if self.shared.poisoned().is_some() => Ok(()),
            SyncPolicy::Always => self.sync(),
            SyncPolicy::Interval(every) if self.last_sync.elapsed() >= every => self.sync(),
            _ => Ok(()),
        };
        match synced {
            Err(err) => self.poison(&err),
            Ok(()) => self.mark_durable(),
        }
        // A write, roll or sync that failed earlier in this round poisoned the partition: the
        // pages of these appends may be lost even if a later sync succeeds, so none of them is
        // acknowledged (fail-stop).
        if let Some(why) = self.shared.poisoned() {
            for (done, _) in self.pending.drain(..) {
                done(Err(LogError::Poisoned(why.clone())));
            }
            return;
        }
        self.publish();
        for (done, result) in self.pending.drain(..) {
            done(Ok(result));
        }
    }

    /// Writes zeros past `write_pos` when the file is about to grow under small synced rounds
    /// (see the module docs). A failure only loses the saving: the next write extends the
    /// file as it would have anyway, and recovery cuts whatever zeros were written.
    fn zero_ahead(&mut self) {
        let small_rounds = self.round_bytes_avg <= ZERO_AHEAD_MAX_ROUND_BYTES;
        if self.shared.config.sync != SyncPolicy::Always
            || !small_rounds
            || self.write_pos <= self.zeroed_to.saturating_sub(ZERO_AHEAD_BYTES as u64 / 2)
        {
            return;
        }
        let from = self.write_pos.max(self.zeroed_to);
        let to = (self.write_pos + ZERO_AHEAD_BYTES as u64).min(self.shared.config.segment_bytes);
        if to <= from {
            return;
        }
        // A fresh zeroed allocation: the allocator maps zero pages, nothing is filled.
        let zeros = vec![0; (to - from) as usize];
        if let Err(e) = self.file.write_all_at(&zeros, from) {
            tracing::debug!(error = %e, "pre-zeroing failed; the file grows with its writes");
        }
        // Even after a failure: part of the zeros may be there, and `trim` cuts them.
        self.zeroed_to = to;
    }

    /// Cuts the zeros written ahead off the active segment and syncs the new length.
    fn trim(&mut self) -> Result<()> {
        if self.zeroed_to > self.write_pos {
            let path = &self.active.path;
            self.file.set_len(self.write_pos).at(path)?;
            self.file.sync_data().at(path)?;
        }
        self.zeroed_to = 0;
        Ok(())
    }

    fn background_sync(&mut self) {
        if self.poisoned().is_none() {
            match self.sync() {
                Err(err) => self.poison(&err),
                Ok(()) => self.mark_durable(),
            }
        }
    }

    /// After a sync, writes (without syncing) an empty batch at the end of the segment whose
    /// `durable_before` says that everything before it is durable, so that recovery after a
    /// crash can tell damage to the last synced round (corruption: refused) from a torn
    /// write of a round never synced (cut). Without it, nothing written after the last round
    /// would vouch for it. `write_pos` does not move: the next round overwrites the marker,
    /// and its own first batch carries the same proof; a seal or close cuts it off.
    fn mark_durable(&mut self) {
        if self.durable_pos != self.write_pos
            || self.durable_pos == self.marked_at
            || self.next_offset == self.active.base_offset
        {
            return;
        }
        let mut marker = EncodedBatch::marker();
        let bytes = marker.seal(self.next_offset, self.last_append_ms, self.write_pos);
        match self.file.write_all_at(bytes, self.write_pos) {
            // Beyond `write_pos`, like the pre-zeroed space: `trim` cuts it at a seal.
            Ok(()) => {
                self.zeroed_to = self.zeroed_to.max(self.write_pos + bytes.len() as u64);
                self.marked_at = self.write_pos;
            }
            // Only the proof is lost: recovery treats the last round as it did without it.
            // Part of it may be on the file all the same, beyond `write_pos`: a seal cuts it.
            Err(e) => {
                self.zeroed_to = self.zeroed_to.max(self.write_pos + bytes.len() as u64);
                tracing::debug!(error = %e, "could not write the durability marker");
            }
        }
    }

    fn sync(&mut self) -> Result<()> {
        self.last_sync = Instant::now();
        if self.durable_pos == self.write_pos {
            return Ok(());
        }
        let started = Instant::now();
        self.file.sync_data().at(&self.active.path)?;
        self.shared.record_sync(started.elapsed());
        self.durable_pos = self.write_pos;
        Ok(())
    }

    /// Makes what was written visible to readers and wakes the listener.
    fn publish(&mut self) {
        {
            let mut s = self.active.state_mut();
            s.visible_len = self.write_pos;
            s.next_offset = self.next_offset;
            s.max_append_ms = s.max_append_ms.max(self.last_append_ms);
            s.first_append_ms = self.first_append_ms;
        }
        self.shared.notify(self.next_offset);
    }

    fn maybe_roll(&mut self, incoming: u64) -> Result<()> {
        let config = &self.shared.config;
        // No record yet (at most a close marker): rolling would create a segment with the
        // same base offset, and so the same file name.
        let empty = self.next_offset == self.active.base_offset;
        let full = self.write_pos + incoming > config.segment_bytes;
        let old = self
            .first_append_ms
            .is_some_and(|t| config.clock.now_ms() - t >= config.segment_max_age_ms);
        if !empty && (full || old) {
            self.roll()?;
        }
        Ok(())
    }

    /// Seals the active segment (synced, indexes written) and starts a new one.
    fn roll(&mut self) -> Result<()> {
        self.sync()?;
        // The round's appends so far are durable now: published and acknowledged here, so a
        // failure below (indexes, the next segment) fails only the appends after them,
        // rather than reporting as failed records that readers see and a reopen keeps.
        self.publish();
        for (done, result) in self.pending.drain(..) {
            done(Ok(result));
        }
        self.trim()?;
        let dir = &self.shared.dir;
        let storage = &*self.shared.config.storage;
        let [_, index_path, time_path] = segment_paths(dir, self.active.base_offset);
        {
            let s = self.active.state();
            let summary = SegmentSummary {
                len: self.write_pos,
                next_offset: self.next_offset,
                max_append_ms: s.max_append_ms,
            };
            s.offsets
                .write(storage, &index_path, OFFSET_INDEX_MAGIC, summary)?;
            s.times
                .write(storage, &time_path, TIME_INDEX_MAGIC, summary)?;
        }
        let segment = Arc::new(create_segment(
            &self.shared.config.storage,
            dir,
            self.next_offset,
        )?);
        self.file = segment.file()?;
        self.shared.segments_mut().push(segment.clone());
        self.active.seal();
        self.active = segment;
        self.write_pos = SEGMENT_HEADER_LEN as u64;
        self.durable_pos = self.write_pos;
        self.first_append_ms = None;
        self.marked_at = 0;
        Ok(())
    }

    /// Deletes whole segments whose newest record is older than the horizon; returns how many.
    fn retain(&mut self, horizon_ms: i64) -> Result<usize> {
        if let Some(err) = self.poisoned() {
            return Err(err);
        }
        let cutoff = self.shared.config.clock.now_ms().saturating_sub(horizon_ms);
        let expired = |s: &Segment| {
            let st = s.state();
            st.next_offset > s.base_offset && st.max_append_ms < cutoff
        };
        let all_sealed_expired = self
            .shared
            .segments()
            .iter()
            .all(|s| Arc::ptr_eq(s, &self.active) || expired(s));
        if all_sealed_expired && expired(&self.active) {
            self.roll().inspect_err(|e| self.poison(e))?;
        }
        let doomed: Vec<Arc<Segment>> = self
            .shared
            .segments()
            .iter()
            .take_while(|s| !Arc::ptr_eq(s, &self.active) && expired(s))
            .cloned()
            .collect();
        // Files first, then the list: a segment whose files could not all be removed stays
        // listed and is tried again by the next pass. The index files go before the log, so a
        // crash in between leaves a segment whose index is rebuilt, never an orphan index.
        let storage = &*self.shared.config.storage;
        let mut deleted = 0;
        let mut failure = None;
        for segment in &doomed {
            let [log, index, time] = segment_paths(&self.shared.dir, segment.base_offset);
            let removed = [index, time, log].iter().try_for_each(|path| {
                if storage.exists(path) {
                    storage.remove_file(path).at(path)?;
                }
                Ok::<(), LogError>(())
            });
            if let Err(e) = removed {
                failure = Some(e);
                break;
            }
            deleted += 1;
        }
        self.shared.segments_mut().drain(..deleted);
        if deleted > 0 {
            storage.sync_dir(&self.shared.dir).at(&self.shared.dir)?;
            tracing::debug!(dir = %self.shared.dir.display(), segments = deleted, "retention deleted segments");
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(deleted),
        }
    }

    /// Syncs and, when anything was written, appends a marker declaring all of it durable.
    fn close(&mut self) -> Result<()> {
        if let Some(err) = self.poisoned() {
            return Err(err);
        }
        if self.written_since_open {
            self.sync()?;
            let mut marker = EncodedBatch::marker();
            let bytes = marker.seal(self.next_offset, self.last_append_ms, self.write_pos);
            self.file
                .write_all_at(bytes, self.write_pos)
                .at(&self.active.path)?;
            self.write_pos += bytes.len() as u64;
            self.sync()?;
            self.trim()?;
            self.publish();
            self.written_since_open = false;
        }
        Ok(())
    }
}
