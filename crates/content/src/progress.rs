//! A small progress-reporting interface shared by pull, push, save and load; the CLI
//! renders it (bars on a terminal, plain lines otherwise).

/// Receives progress of per-item (usually per-layer) transfers.
pub trait Progress: Sync {
    /// Work on `id` started; `total` bytes when known.
    fn start(&self, id: &str, total: Option<u64>);
    /// `n` more bytes of `id` were handled.
    fn advance(&self, id: &str, n: u64);
    /// `id` finished with a short status (`Pull complete`, `Already exists`).
    fn finish(&self, id: &str, status: &str);
}

/// Discards all progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str, _: &str) {}
}

/// A reader that reports every read to a [`Progress`].
pub struct ProgressReader<'a, R> {
    inner: R,
    id: String,
    progress: &'a dyn Progress,
}

impl<'a, R> ProgressReader<'a, R> {
    /// Wraps `inner`, reporting under `id`.
    pub fn new(inner: R, id: &str, progress: &'a dyn Progress) -> Self {
        Self {
            inner,
            id: id.to_string(),
            progress,
        }
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(&self.id, n as u64);
        Ok(n)
    }
}
