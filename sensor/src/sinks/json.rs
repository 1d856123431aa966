//! Where alert lines go: JSON lines to stdout or a file (more sinks come
//! with the SIEM feed). A sink never drops a line silently: a write error
//! is counted and reported.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

/// `--json PATH|-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonTarget {
    Stdout,
    File(PathBuf),
}

impl JsonTarget {
    pub fn parse(spec: &str) -> JsonTarget {
        if spec == "-" {
            JsonTarget::Stdout
        } else {
            JsonTarget::File(PathBuf::from(spec))
        }
    }
}

/// Alert lines as JSON, one object per line.
pub struct JsonSink {
    target: JsonTarget,
    out: BufWriter<Box<dyn Write + Send>>,
    pub lines: u64,
    pub errors: u64,
}

impl JsonSink {
    /// Opens the target (a file is appended to, and created if missing).
    pub fn open(target: JsonTarget) -> io::Result<JsonSink> {
        let out = Self::writer(&target)?;
        Ok(JsonSink {
            target,
            out,
            lines: 0,
            errors: 0,
        })
    }

    fn writer(target: &JsonTarget) -> io::Result<BufWriter<Box<dyn Write + Send>>> {
        let inner: Box<dyn Write + Send> = match target {
            JsonTarget::Stdout => Box::new(io::stdout()),
            JsonTarget::File(path) => Box::new(append(path)?),
        };
        Ok(BufWriter::new(inner))
    }

    pub fn write_line(&mut self, line: &str) {
        let result = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        match result {
            Ok(()) => self.lines += 1,
            Err(err) => {
                self.errors += 1;
                tracing::error!(target_path = ?self.target, error = %err, "cannot write alert line");
            }
        }
    }

    /// Pushes buffered lines out (done after each batch, and at shutdown).
    pub fn flush(&mut self) {
        if let Err(err) = self.out.flush() {
            self.errors += 1;
            tracing::error!(target_path = ?self.target, error = %err, "cannot flush alert lines");
        }
    }

    /// Closes and reopens a file target (after logrotate moved it).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.flush();
        if matches!(self.target, JsonTarget::File(_)) {
            self.out = Self::writer(&self.target)?;
        }
        Ok(())
    }
}

fn append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sink_appends_lines_and_reopens_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        let mut sink = JsonSink::open(JsonTarget::File(path.clone())).unwrap();
        sink.write_line("{\"a\":1}");
        sink.flush();
        std::fs::rename(&path, dir.path().join("alerts.json.1")).unwrap();
        sink.reopen().unwrap();
        sink.write_line("{\"a\":2}");
        sink.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":2}\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("alerts.json.1")).unwrap(),
            "{\"a\":1}\n"
        );
        assert_eq!((sink.lines, sink.errors), (2, 0));
    }
}
