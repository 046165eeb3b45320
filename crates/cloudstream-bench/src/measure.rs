//! What a measurement reads besides its own counts: a process's CPU time and peak memory
//! (from `/proc`), the disk's cache flushes (from `/proc/diskstats`: each durability
//! setting shows in them), and latency percentiles from every sample.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`: 100 on Linux).
const TICKS: f64 = 100.0;

/// CPU seconds (user and system, every thread) of process `pid` so far.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces and parentheses).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

/// Starts a new peak of resident memory for `pid` (`clear_refs` 5), where allowed.
pub(crate) fn reset_peak_memory(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The peak resident memory of `pid` since its last reset, in MiB.
pub(crate) fn peak_memory_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The whole disk whose flushes are counted: the one holding the peers' data.
static DISK: OnceLock<Option<String>> = OnceLock::new();

/// Counts, from now on, the cache flushes of the disk that holds `path` (the whole disk of
/// its partition, as `/proc/diskstats` names it).
pub(crate) fn watch_disk(path: &Path) {
    DISK.get_or_init(|| disk_of(path));
}

fn disk_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    // glibc's major() and minor().
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let link = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    // A partition's directory holds a `partition` file and sits in its disk's.
    let disk = if link.join("partition").exists() {
        link.parent()?
    } else {
        &link
    };
    Some(disk.file_name()?.to_string_lossy().into_owned())
}

/// Cache flushes the watched disk completed so far: iostats field 16, the 19th column of
/// its `/proc/diskstats` line (kernels from 5.5); `None` if unknown.
pub(crate) fn disk_flushes() -> Option<u64> {
    let disk = DISK.get()?.as_deref()?;
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    stats.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(2) == Some(&disk)).then(|| fields.get(18)?.parse().ok())?
    })
}

/// What a peer's process and the disk did during a measured window.
#[derive(Debug)]
pub(crate) struct Window {
    started: Instant,
    pid: Option<u32>,
    cpu: Option<f64>,
    own_cpu: Option<f64>,
    flushes: Option<u64>,
}

/// The window's figures.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Usage {
    /// How long it lasted.
    pub(crate) seconds: f64,
    /// The server's CPU seconds (the harness's too for a peer in this process).
    pub(crate) server_cpu_s: Option<f64>,
    /// The harness's own CPU seconds (clients, and an in-process peer).
    pub(crate) client_cpu_s: Option<f64>,
    /// The server's peak resident memory, MiB.
    pub(crate) peak_mib: Option<f64>,
    /// Disk cache flushes.
    pub(crate) flushes: Option<u64>,
}

impl Window {
    /// Starts measuring `pid` (or this process).
    pub(crate) fn start(pid: Option<u32>) -> Window {
        let own = std::process::id();
        let pid = pid.or(Some(own));
        if let Some(pid) = pid {
            reset_peak_memory(pid);
        }
        Window {
            started: Instant::now(),
            pid,
            cpu: pid.and_then(cpu_seconds),
            own_cpu: cpu_seconds(own),
            flushes: disk_flushes(),
        }
    }

    /// Ends it.
    pub(crate) fn finish(self) -> Usage {
        let own = std::process::id();
        let delta = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
        Usage {
            seconds: self.started.elapsed().as_secs_f64(),
            server_cpu_s: delta(self.cpu, self.pid.and_then(cpu_seconds)),
            client_cpu_s: delta(self.own_cpu, cpu_seconds(own)),
            peak_mib: self.pid.and_then(peak_memory_mib),
            flushes: disk_flushes()
                .zip(self.flushes)
                .map(|(a, b)| a.saturating_sub(b)),
        }
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) samples: usize,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
}

impl Percentiles {
    /// Of every sample; `None` without any.
    pub(crate) fn of(mut samples: Vec<Duration>) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[i].as_secs_f64() * 1e6
        };
        Some(Percentiles {
            samples: samples.len(),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: at(1.0),
        })
    }
}
