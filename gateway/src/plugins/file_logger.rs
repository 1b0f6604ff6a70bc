//! `file_logger`: access log lines appended to a file in batches by a
//! background thread; the request path only pushes into a bounded queue
//! (a full queue drops the entry and counts it).

use std::io::Write;
use std::sync::LazyLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use pingora_config::v1;
use pingora_config::v1::file_logger_plugin::Format;

use super::{BuildCx, Hooks, LogEntry, Plugin, PluginCtx};
use crate::upstream::duration;

pub static DROPPED: LazyLock<Option<prometheus::IntCounterVec>> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "pingora_config_log_entries_dropped_total",
        "Access log entries dropped because the logger's queue was full.",
        &["logger"]
    )
    .ok()
});

pub struct FileLogger {
    queue: SyncSender<String>,
    text: bool,
    body: super::log_entry::BodyLimits,
}

pub fn build(cfg: &v1::FileLoggerPlugin, _cx: &mut BuildCx<'_>) -> Result<FileLogger, String> {
    let path = std::path::PathBuf::from(&cfg.path);
    // Opened now so that a path that cannot be written rejects the config.
    let file = open(&path).map_err(|e| format!("path: cannot open {}: {e}", path.display()))?;
    let (tx, rx) = sync_channel(cfg.max_queue.unwrap_or(10_000) as usize);
    let batch = cfg.batch_max_size.unwrap_or(1000) as usize;
    let flush = cfg.flush_interval.as_ref().map(duration).unwrap_or(Duration::from_secs(1));
    std::thread::Builder::new()
        .name("file-logger".into())
        .spawn(move || writer(path, file, rx, batch, flush))
        .map_err(|e| format!("cannot start the writer thread: {e}"))?;
    Ok(FileLogger {
        queue: tx,
        text: cfg.format() == Format::Text,
        body: super::log_entry::BodyLimits::new(
            cfg.include_req_body,
            cfg.max_req_body_bytes,
            cfg.include_resp_body,
            cfg.max_resp_body_bytes,
        ),
    })
}

fn open(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread: ends when the plugin (every sender) is dropped by a
/// reload, after writing what is queued.
fn writer(path: std::path::PathBuf, mut file: std::fs::File, rx: Receiver<String>, batch: usize, flush: Duration) {
    let mut buf = String::new();
    let mut count = 0;
    let mut oldest: Option<Instant> = None;
    loop {
        let wait = oldest.map(|t| flush.saturating_sub(t.elapsed())).unwrap_or(flush);
        let done = match rx.recv_timeout(wait) {
            Ok(line) => {
                buf.push_str(&line);
                buf.push('\n');
                count += 1;
                oldest.get_or_insert_with(Instant::now);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let due = oldest.is_some_and(|t| t.elapsed() >= flush);
        if count > 0 && (count >= batch || due || done) {
            // Reopen when the file was moved or deleted (log rotation).
            if reopen_needed(&path, &file)
                && let Ok(f) = open(&path)
            {
                file = f;
            }
            if let Err(e) = file.write_all(buf.as_bytes()) {
                log::warn!("file_logger {}: {e}", path.display());
            }
            buf.clear();
            count = 0;
            oldest = None;
        }
        if done {
            return;
        }
    }
}

fn reopen_needed(path: &std::path::Path, file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(on_disk), Ok(open)) => on_disk.ino() != open.ino() || on_disk.dev() != open.dev(),
        _ => true,
    }
}

#[async_trait::async_trait]
impl Plugin for FileLogger {
    fn hooks(&self) -> Hooks {
        Hooks::LOG
    }

    fn log(&self, entry: &LogEntry<'_>, ctx: &PluginCtx) {
        let line = if self.text { entry.text_line(ctx) } else { entry.json(ctx, &self.body).to_string() };
        if let Err(TrySendError::Full(_)) = self.queue.try_send(line)
            && let Some(d) = DROPPED.as_ref()
        {
            d.with_label_values(&["file_logger"]).inc();
        }
    }

    fn body_capture(&self) -> super::log_entry::BodyLimits {
        self.body
    }
}
