//! Container log files: written by the shim, read back by the driver.
//!
//! One file per container, `container.log`, one record per line: `stdout <text>` or
//! `stderr <text>`. When it grows past the cap it is renamed to `container.log.1` (the
//! previous rotation is dropped) and a new file starts. Readers see the rotated file, then
//! the current one.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::spec::{LogLine, Stream};

/// Default cap before rotation.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;
/// Longest line kept in one record; longer output is split.
pub const MAX_LINE: usize = 16 << 10;

/// Appends records with rotation. The file is created with the first record, so a
/// container that prints nothing costs no file.
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    /// Open (append) the log at `path` with a size cap; a missing file is created with the
    /// first record.
    pub fn open(path: &Path, max: u64) -> io::Result<Self> {
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
            let rotated = rotated_path(&self.path);
            std::fs::rename(&self.path, &rotated)?;
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

/// The rotated file's path.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
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
    let mut out = Vec::new();
    for p in [rotated_path(path), path.to_path_buf()] {
        match File::open(&p) {
            Ok(f) => {
                for l in BufReader::new(f).lines() {
                    if let Some(r) = parse(&l?) {
                        out.push(r);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(t) = tail {
        let skip = out.len().saturating_sub(t);
        out.drain(..skip);
    }
    Ok(out)
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
    for r in read_all(path, tail)? {
        writeln!(out, "{}", r.line)?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut pos = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
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
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_partial_and_rotation() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("container.log");
        let mut w = LogWriter::open(&p, 64).expect("open");
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
}
