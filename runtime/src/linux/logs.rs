//! Container log files: written by the shim, read back by the driver.
//!
//! One file per container, `<name>.log`, one record per line: `stdout <text>` or
//! `stderr <text>`. When it grows past the size cap the rotated files shift (`.log.1` to
//! `.log.2`, ...; the oldest beyond the file count is dropped), the current file becomes
//! `.log.1` and a new one starts, as the kubelet's `containerLogMaxSize`/`MaxFiles` do.
//! Readers see the rotated files oldest first, then the current one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::spec::{LogLine, Stream};

/// Default cap before rotation.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;
/// Default number of files kept, the current one included (the kubelet's default).
pub const DEFAULT_MAX_FILES: u32 = 5;
/// Most files kept, the current one included.
pub const MAX_FILES: u32 = 10;
/// Longest line kept in one record; longer output is split.
pub const MAX_LINE: usize = 16 << 10;

/// Appends records with rotation. The file is created with the first record, so a
/// container that prints nothing costs no file.
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
    rotated: u32,
    partial: [Vec<u8>; 2],
}

/// Files kept (current one included) for a requested count: 0 means the default, and the
/// count is clamped to 2..=[`MAX_FILES`].
pub fn effective_max_files(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_MAX_FILES,
        n => n.clamp(2, MAX_FILES),
    }
}

impl LogWriter {
    /// Open (append) the log at `path` with a size cap and a file count (see
    /// [`effective_max_files`]); a missing file is created with the first record.
    pub fn open(path: &Path, max: u64, max_files: u32) -> io::Result<Self> {
        let file = match OpenOptions::new().append(true).open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let size = match &file {
            Some(f) => f.metadata()?.len(),
            None => 0,
        };
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max: if max == 0 { DEFAULT_MAX_BYTES } else { max },
            rotated: effective_max_files(max_files) - 1,
            partial: [Vec::new(), Vec::new()],
        })
    }

    fn record(&mut self, stream: Stream, line: &[u8]) -> io::Result<()> {
        let tag: &[u8] = match stream {
            Stream::Stdout => b"stdout ",
            Stream::Stderr => b"stderr ",
        };
        let len = (tag.len() + line.len() + 1) as u64;
        if self.size > 0 && self.size + len > self.max {
            for n in (1..self.rotated).rev() {
                match std::fs::rename(
                    rotated_path_n(&self.path, n),
                    rotated_path_n(&self.path, n + 1),
                ) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, rotated_path(&self.path))?;
            self.file = None;
            self.size = 0;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            ),
        };
        let mut buf = Vec::with_capacity(len as usize);
        buf.extend_from_slice(tag);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        file.write_all(&buf)?;
        self.size += len;
        Ok(())
    }

    /// Feed raw bytes from a stream; complete lines become records.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let idx = stream as usize;
        let mut buf = std::mem::take(&mut self.partial[idx]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = buf[start..start + pos].to_vec();
            self.record(stream, &line)?;
            start += pos + 1;
        }
        let mut rest = buf.split_off(start);
        while rest.len() >= MAX_LINE {
            let tail = rest.split_off(MAX_LINE);
            self.record(stream, &rest)?;
            rest = tail;
        }
        self.partial[idx] = rest;
        Ok(())
    }

    /// Write out partial lines (at stream end).
    pub fn flush_partial(&mut self) -> io::Result<()> {
        for (i, s) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            let p = std::mem::take(&mut self.partial[i]);
            if !p.is_empty() {
                self.record(s, &p)?;
            }
        }
        Ok(())
    }
}

/// The most recent rotated file's path.
pub fn rotated_path(path: &Path) -> PathBuf {
    rotated_path_n(path, 1)
}

/// The `n`th most recent rotated file's path (`<path>.<n>`).
pub fn rotated_path_n(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn parse(line: &str) -> Option<LogLine> {
    if let Some(t) = line.strip_prefix("stdout ") {
        Some(LogLine {
            stream: Stream::Stdout,
            line: t.to_string(),
        })
    } else {
        line.strip_prefix("stderr ").map(|t| LogLine {
            stream: Stream::Stderr,
            line: t.to_string(),
        })
    }
}

/// Read all records (rotated first), keeping only the last `tail` if set.
pub fn read_all(path: &Path, tail: Option<usize>) -> io::Result<Vec<LogLine>> {
    read_all_at(path, tail).map(|(lines, _)| lines)
}

/// [`read_all`], and how many bytes of the current file it consumed (whole records only:
/// a record still being written is left for the follower).
fn read_all_at(path: &Path, tail: Option<usize>) -> io::Result<(Vec<LogLine>, u64)> {
    let mut out = Vec::new();
    let mut consumed = 0;
    let files = (1..MAX_FILES)
        .rev()
        .map(|n| rotated_path_n(path, n))
        .chain([path.to_path_buf()]);
    for p in files {
        match File::open(&p) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                for l in String::from_utf8_lossy(&bytes[..whole]).lines() {
                    if let Some(r) = parse(l) {
                        out.push(r);
                    }
                }
                consumed = whole as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => consumed = 0,
            Err(e) => return Err(e),
        }
    }
    if let Some(t) = tail {
        let skip = out.len().saturating_sub(t);
        out.drain(..skip);
    }
    Ok((out, consumed))
}

/// Write records to `out`, then with `follow` keep writing new ones until `done()` is true
/// (checked after the file stops growing) or `limit` passes.
pub fn stream(
    path: &Path,
    tail: Option<usize>,
    follow: bool,
    out: &mut dyn Write,
    done: &mut dyn FnMut() -> bool,
    limit: Duration,
) -> io::Result<()> {
    // Watch before reading, so a change right after the read still wakes us.
    let watch = follow
        .then(|| path.parent().and_then(DirWatch::new))
        .flatten();
    let (lines, mut pos) = read_all_at(path, tail)?;
    for r in lines {
        writeln!(out, "{}", r.line)?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let deadline = Instant::now() + limit;
    let mut carry = String::new();
    loop {
        let finished = done();
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // rotated
        }
        if len > pos {
            let mut f = File::open(path)?;
            f.seek(SeekFrom::Start(pos))?;
            let mut buf = String::new();
            f.take(len - pos).read_to_string(&mut buf)?;
            pos = len;
            carry.push_str(&buf);
            while let Some(i) = carry.find('\n') {
                let line: String = carry.drain(..=i).collect();
                if let Some(r) = parse(line.trim_end_matches('\n')) {
                    writeln!(out, "{}", r.line)?;
                }
            }
            out.flush()?;
            continue;
        }
        if finished || Instant::now() > deadline {
            return Ok(());
        }
        match &watch {
            Some(w) => w.wait(Duration::from_millis(500)),
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Wakes a follower when anything in the log's directory changes (the log grows, rotates
/// or appears, or the container's state file gets its exit record), instead of polling.
struct DirWatch(nix::sys::inotify::Inotify);

impl DirWatch {
    fn new(dir: &Path) -> Option<DirWatch> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok()?;
        ino.add_watch(
            dir,
            AddWatchFlags::IN_MODIFY
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_DELETE_SELF,
        )
        .ok()?;
        Some(DirWatch(ino))
    }

    /// Block until a change or `max` passes (a safety net: changes are never missed, since
    /// the caller re-reads after every wake-up), then drain the queued events.
    fn wait(&self, max: Duration) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let ms = PollTimeout::try_from(max.as_millis() as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, ms);
        while let Ok(ev) = self.0.read_events() {
            if ev.is_empty() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_partial_and_rotation() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("container.log");
        let mut w = LogWriter::open(&p, 64, 2).expect("open");
        assert!(!p.exists(), "no file before the first record");
        assert!(read_all(&p, None).expect("read").is_empty());
        w.write(Stream::Stdout, b"hel").expect("w");
        w.write(Stream::Stderr, b"oops\n").expect("w");
        w.write(Stream::Stdout, b"lo\nworld\n").expect("w");
        let got = read_all(&p, None).expect("read");
        let lines: Vec<_> = got.iter().map(|l| (l.stream, l.line.as_str())).collect();
        assert_eq!(
            lines,
            vec![
                (Stream::Stderr, "oops"),
                (Stream::Stdout, "hello"),
                (Stream::Stdout, "world")
            ]
        );
        for i in 0..20 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .expect("w");
        }
        assert!(rotated_path(&p).exists());
        assert!(std::fs::metadata(&p).expect("meta").len() <= 64);
        let tail = read_all(&p, Some(2)).expect("read");
        assert_eq!(
            tail.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            vec!["line 18", "line 19"]
        );
        w.write(Stream::Stdout, b"no newline").expect("w");
        w.flush_partial().expect("flush");
        assert_eq!(read_all(&p, Some(1)).expect("read")[0].line, "no newline");
    }

    #[test]
    fn rotation_keeps_max_files() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("c.log");
        // Each record is 16 bytes ("stdout line NN\n" plus tag); cap 40 bytes: two records
        // per file, three files kept.
        let mut w = LogWriter::open(&p, 40, 3).expect("open");
        for i in 10..30 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .expect("w");
        }
        assert!(rotated_path_n(&p, 2).exists());
        assert!(!rotated_path_n(&p, 3).exists(), "only three files kept");
        let lines: Vec<String> = read_all(&p, None)
            .expect("read")
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(
            lines,
            vec!["line 24", "line 25", "line 26", "line 27", "line 28", "line 29"]
        );
        assert_eq!(effective_max_files(0), DEFAULT_MAX_FILES);
        assert_eq!(effective_max_files(1), 2);
        assert_eq!(effective_max_files(99), MAX_FILES);
    }
}
